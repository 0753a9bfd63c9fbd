import { Deferred, Effect } from "effect"

/**
 * The channel as the source measures it while using it, refreshed every pre-copy round:
 *
 * - Delivery rate: a round's bytes over the time from the round's start until the destination
 *   acknowledges having read its last byte (the round's closing probe), less one round trip.
 *   That is what the whole path delivers (reads, checksums, the socket, the destination's
 *   reader and its back-pressure), measured the way the drain will use it: from an empty
 *   channel to the last byte read. What the writer merely handed to the socket is not
 *   delivered yet: a socket buffer can swallow a small round at once. The last `rateWindow`
 *   rounds count (bytes over time), so a channel that speeds up or slows down is followed,
 *   not averaged from the start.
 * - Round trip: a probe sent on an empty channel (the opening probe of a round, sent once the
 *   round before was acknowledged; the handshake) and answered at once by the destination. The
 *   least of the last `roundTripWindow` samples: a sample stretched by a busy event loop or a
 *   busy destination is not the network's, and an old sample leaves the window.
 */
export class ChannelMeter {
  private readonly deliveries: Array<{ readonly bytes: number; readonly ms: number }> = []
  private readonly roundTrips: Array<number> = []

  constructor(
    private readonly rateWindow = 3,
    private readonly roundTripWindow = 5
  ) {}

  /** A round trip measured on an empty channel, in ms. */
  recordRoundTrip(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return
    this.roundTrips.push(ms)
    if (this.roundTrips.length > this.roundTripWindow) this.roundTrips.shift()
  }

  /**
   * `bytes` delivered in `elapsedMs`, from the start of their round to the destination's
   * acknowledgement of the last of them. One round trip (at most half the time) is not
   * transfer: the first byte took half of it to arrive and the acknowledgement the other half.
   */
  recordDelivery(bytes: number, elapsedMs: number): void {
    if (bytes <= 0 || !(elapsedMs > 0)) return
    const ms = elapsedMs - Math.min(this.roundTripMs ?? 0, elapsedMs / 2)
    this.deliveries.push({ bytes, ms })
    if (this.deliveries.length > this.rateWindow) this.deliveries.shift()
  }

  /** Bytes per second delivered over the recent rounds; `undefined` before any. */
  get rate(): number | undefined {
    let bytes = 0
    let ms = 0
    for (const d of this.deliveries) {
      bytes += d.bytes
      ms += d.ms
    }
    return ms > 0 ? (bytes / ms) * 1000 : undefined
  }

  /** The round trip, in ms: the least recent sample; `undefined` before any. */
  get roundTripMs(): number | undefined {
    return this.roundTrips.length === 0 ? undefined : Math.min(...this.roundTrips)
  }

  /** Half the round trip, in ms (0 before any sample). */
  get oneWayMs(): number {
    return (this.roundTripMs ?? 0) / 2
  }
}

/** The rate an estimate should assume: the measured delivery rate, within the limit. */
export const assumedRate = (meter: ChannelMeter, limit: number): number => Math.min(limit, meter.rate ?? limit)

/** A probe sent and not answered yet. */
interface Pending {
  readonly sentAt: number
  /** Sent on an empty channel: its answer times the round trip. */
  readonly opening: boolean
  readonly answered: Deferred.Deferred<void>
}

/**
 * The source's probes: each has an id the destination echoes as soon as it reads it. An
 * opening probe (sent on an empty channel) gives the meter a round trip; any probe's answer
 * tells that everything sent before it has been read.
 */
export class Probes {
  private next = 0
  private readonly pending = new Map<number, Pending>()

  constructor(private readonly meter: ChannelMeter) {}

  /** Registers a probe sent at `now`: its id, and what completes when it is answered. */
  open(
    opening: boolean,
    now: number
  ): Effect.Effect<{ readonly id: number; readonly answered: Deferred.Deferred<void> }> {
    return Effect.map(Deferred.make<void>(), (answered) => {
      const id = this.next++
      this.pending.set(id, { sentAt: now, opening, answered })
      return { id, answered }
    })
  }

  /** The answer to probe `id`, read at `now`; `false` for an id no probe pending has. */
  answer(id: number, now: number): Effect.Effect<boolean> {
    const probe = this.pending.get(id)
    if (probe === undefined) return Effect.succeed(false)
    this.pending.delete(id)
    if (probe.opening) this.meter.recordRoundTrip(now - probe.sentAt)
    return Effect.as(Deferred.succeed(probe.answered, undefined), true)
  }
}
