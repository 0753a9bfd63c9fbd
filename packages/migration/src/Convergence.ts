import type { SwitchoverReason } from "./Events.js"

/**
 * Whether pre-copy converges, and when to switch over.
 *
 * After every round the source knows the bytes a switchover would still have to send (the sum
 * of the devices' STOP_COPY lengths, counting only lengths the devices reported: an assumed
 * length is a constant that says nothing about progress), what it sent in the round, and when.
 * From those:
 *
 *   dirtied(round) = remaining(after) − remaining(before) + sent(round)      (never below 0)
 *   dirty rate     = Σ dirtied / Σ time between the measurements, over the recent rounds
 *
 * and the rule (the first that holds decides):
 *
 * 1. converged: the downtime estimate is within the limit and every pre-copy device's initial
 *    data is acknowledged;
 * 2. stalled: every device's initial data is acknowledged, the estimate is finite, and the
 *    remaining bytes after this round are not at least {@link minShrink} below the least seen
 *    before it (round 0 being the state before pre-copy): another round resends what is
 *    dirtied meanwhile instead of shrinking what is left; or nothing was sent in the round
 *    (nothing is left to pre-copy) while the estimate is still over the limit;
 * 3. rounds / time: the round or pre-copy time limit is reached;
 * 4. otherwise another round; with nothing sent and an acknowledgement still missing, wait for it.
 *
 * Stalled bounds the rounds even when nothing else does: every round that does not stall takes
 * the least remaining down by a factor of at least (1 − minShrink), so from remaining R₀ to a
 * floor F (what pre-copy can never send, such as data a device only gives in STOP_COPY) there
 * are at most ⌈ln(R₀ / F) / −ln(1 − minShrink)⌉ such rounds, then one that stalls, plus the
 * rounds spent waiting for acknowledgements.
 */

/** The least fraction by which a round must shrink the remaining bytes to count as progress. */
export const minShrink = 0.1

/** One measurement of the remaining bytes. */
interface Measurement {
  /** Clock time, in ms. */
  readonly at: number
  readonly remaining: number
  /** Bytes sent since the measurement before (0 for the first). */
  readonly sent: number
}

/**
 * The remaining bytes, measured before pre-copy and after each round, and the dirty rate they
 * imply. `window` rounds count for the rate.
 */
export class PrecopyProgress {
  private readonly measurements: Array<Measurement> = []

  constructor(private readonly window = 3) {}

  /** Records the remaining bytes at `at`, `sent` having been sent since the last record. */
  record(at: number, remaining: number, sent: number): void {
    this.measurements.push({ at, remaining, sent })
  }

  /** The remaining bytes of every record, oldest first (before pre-copy, then after each round). */
  get history(): ReadonlyArray<number> {
    return this.measurements.map((m) => m.remaining)
  }

  /** Bytes dirtied per second over the recent rounds; `undefined` until two records. */
  get dirtyRate(): number | undefined {
    const recent = this.measurements.slice(-(this.window + 1))
    let dirtied = 0
    let ms = 0
    for (let i = 1; i < recent.length; i++) {
      const before = recent[i - 1]
      const after = recent[i]
      if (before === undefined || after === undefined) continue
      dirtied += Math.max(0, after.remaining - before.remaining + after.sent)
      ms += after.at - before.at
    }
    return ms > 0 ? (dirtied / ms) * 1000 : undefined
  }

  /**
   * When the last record did not shrink the remaining bytes by {@link minShrink} below the
   * least before it: that record and that least; `undefined` when it did (or with one record).
   */
  get stall(): { readonly remaining: number; readonly leastBefore: number } | undefined {
    const last = this.measurements.at(-1)
    if (last === undefined || this.measurements.length < 2) return undefined
    let leastBefore = Number.POSITIVE_INFINITY
    for (const m of this.measurements.slice(0, -1)) leastBefore = Math.min(leastBefore, m.remaining)
    return last.remaining > (1 - minShrink) * leastBefore ? { remaining: last.remaining, leastBefore } : undefined
  }
}

/** What the source knows after a round, for {@link decideSwitchover}. */
export interface RoundOutcome {
  readonly round: number
  /** Bytes sent in the round, every device counted. */
  readonly sentBytes: number
  readonly estimateMs: number
  readonly downtimeLimitMs: number
  /** Every pre-copy device's initial data is acknowledged. */
  readonly acknowledged: boolean
  /** From {@link PrecopyProgress.stall}. */
  readonly stall: PrecopyProgress["stall"]
  readonly maxRounds: number
  readonly elapsedMs: number
  readonly maxPrecopyMs: number
}

/** The decision after a round: switch over (and why), another round, or wait for acknowledgements. */
export type RoundDecision =
  | { readonly _tag: "Switch"; readonly reason: Exclude<SwitchoverReason, "no-precopy">; readonly why: string }
  | { readonly _tag: "Continue" }
  | { readonly _tag: "AwaitAcknowledgements" }

const bytes = (n: number): string => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${n} bytes`)

const ms = (value: number): string =>
  Number.isFinite(value) ? `${Math.round(value * 10) / 10} ms` : "unbounded (a stop-copy length is unknown)"

/** The rule of this module, after one round. */
export const decideSwitchover = (r: RoundOutcome): RoundDecision => {
  const over =
    r.estimateMs > r.downtimeLimitMs
      ? `the downtime estimate ${ms(r.estimateMs)} is over the limit of ${ms(r.downtimeLimitMs)}`
      : "the destination has not acknowledged every device's initial data"
  if (r.estimateMs <= r.downtimeLimitMs && r.acknowledged)
    return {
      _tag: "Switch",
      reason: "converged",
      why: `the downtime estimate ${ms(r.estimateMs)} is within the limit of ${ms(r.downtimeLimitMs)}, and every device's initial data is acknowledged`
    }
  if (r.acknowledged && Number.isFinite(r.estimateMs) && r.stall !== undefined)
    return {
      _tag: "Switch",
      reason: "stalled",
      why: `pre-copy stopped converging: ${bytes(r.stall.remaining)} remained after round ${r.round}, not ${minShrink * 100}% below the least before it (${bytes(r.stall.leastBefore)}), so more rounds would only resend what is dirtied meanwhile; ${over}`
    }
  if (r.acknowledged && r.sentBytes === 0)
    return { _tag: "Switch", reason: "stalled", why: `nothing was left to pre-copy, and ${over}` }
  if (r.round >= r.maxRounds)
    return { _tag: "Switch", reason: "rounds", why: `the round limit (${r.maxRounds}) was reached, and ${over}` }
  if (r.elapsedMs >= r.maxPrecopyMs)
    return {
      _tag: "Switch",
      reason: "time",
      why: `the pre-copy time limit (${ms(r.maxPrecopyMs)}) was reached, and ${over}`
    }
  return r.sentBytes === 0 ? { _tag: "AwaitAcknowledgements" } : { _tag: "Continue" }
}
