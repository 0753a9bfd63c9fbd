import { Clock, Effect } from "effect"

/**
 * The source's bandwidth limit, as a model of one channel: a chunk of `bytes` occupies the
 * channel for `bytes / bytesPerSecond` from the moment the channel is free (the end of the chunk
 * before it, or now if it has been idle), and leaves only when that time is over. A chunk
 * therefore never arrives before its own transmission time has passed, even on a channel that
 * delivers at once (in memory, on virtual time), so the last chunk of a drain costs what it
 * weighs. No burst credit is saved up while idle. Shared by every device's reader, so the
 * devices share the one channel. Runs on the Clock, so virtual time paces it too.
 */
export interface Throttle {
  /** Reserves the channel for `bytes` and waits until they have crossed it. */
  readonly pace: (bytes: number) => Effect.Effect<void>
}

/** The clock's resolution, in ms. */
const nanosecond = 1e-6

/** A throttle at `bytesPerSecond`; no limit (and no waiting) when it is `Infinity`. */
export const throttle = (bytesPerSecond: number): Throttle => {
  if (!Number.isFinite(bytesPerSecond)) return { pace: () => Effect.void }
  let free = Number.NEGATIVE_INFINITY
  return {
    pace: (bytes) =>
      Effect.clockWith((clock) =>
        Effect.suspend(() => {
          const now = clock.currentTimeMillisUnsafe()
          // Clocks keep whole nanoseconds and waits are rounded up to one: a sender back within
          // a nanosecond of the channel becoming free continues from that instant, so the
          // rounding never accumulates over a long drain.
          const crossed = (now > free + nanosecond ? now : free) + (bytes / bytesPerSecond) * 1000
          free = crossed
          return crossed > now ? Effect.sleep(Math.ceil((crossed - now) * 1e6 - 1e-7) / 1e6) : Effect.void
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
