import { Clock, Effect } from "effect"

/**
 * The source's bandwidth limit, as pacing: each chunk may leave once the chunks before it have
 * had their share of time at `bytesPerSecond`, so the average rate never exceeds it (no burst
 * credit is saved up while idle). Shared by every device's reader. Runs on the Clock, so
 * virtual time paces it too.
 */
export interface Throttle {
  /** Waits until `bytes` more may be sent. */
  readonly pace: (bytes: number) => Effect.Effect<void>
}

/** A throttle at `bytesPerSecond`; no limit (and no waiting) when it is `Infinity`. */
export const throttle = (bytesPerSecond: number): Throttle => {
  if (!Number.isFinite(bytesPerSecond)) return { pace: () => Effect.void }
  let nextFree = Number.NEGATIVE_INFINITY
  return {
    pace: (bytes) =>
      Effect.clockWith((clock) =>
        Effect.suspend(() => {
          const now = clock.currentTimeMillisUnsafe()
          const start = Math.max(now, nextFree)
          nextFree = start + (bytes / bytesPerSecond) * 1000
          return start > now ? Effect.sleep(start - now) : Effect.void
        })
      )
  }
}

/**
 * Measured transfer rate: bytes moved over the time spent moving them (pre-copy rounds and
 * their waits on the channel, not idle time between rounds).
 */
export class BandwidthMeter {
  private bytes = 0
  private ms = 0

  /** Records `bytes` moved in `ms`. */
  record(bytes: number, ms: number): void {
    if (bytes <= 0) return
    this.bytes += bytes
    this.ms += ms
  }

  /** Bytes per second so far; `undefined` until some time has been measured. */
  get rate(): number | undefined {
    return this.ms > 0 ? (this.bytes / this.ms) * 1000 : undefined
  }
}

/** The rate an estimate should assume: the measured one, within the limit. */
export const assumedRate = (meter: BandwidthMeter, limit: number): number => Math.min(limit, meter.rate ?? limit)

/** The Clock's time in ms. */
export const nowMs: Effect.Effect<number> = Clock.currentTimeMillis
