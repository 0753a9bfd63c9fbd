import type { Plan, TransitionEvent } from "@lockstep/coordinator"
import { type Device, type DeviceError, stopArcOfQuiesce } from "@lockstep/device"
import type { Arc } from "@lockstep/fsm"
import { Effect } from "effect"
import { isUnsupported } from "./Transfer.js"

/**
 * The STOP_COPY length assumed for a device that cannot tell its own and has no estimate from
 * its user: QEMU's for the same case (`VFIO_MIG_STOP_COPY_SIZE`, 100 GiB), chosen so that the
 * downtime limit is never wrongly met. The estimate goes further and counts it as unbounded.
 */
export const PessimisticStopCopyLength = 100 * 2 ** 30

/** A device's STOP_COPY length that did not come from the device. */
export interface AssumedStopCopyLength {
  readonly device: string
  readonly bytes: number
  /**
   * `estimate`: the device's `stopCopyLengthEstimate`, as its user configured it;
   * `pessimistic`: nothing known, {@link PessimisticStopCopyLength} assumed.
   */
  readonly source: "estimate" | "pessimistic"
}

/**
 * Stop-copy lengths as a source session asks for them: from the device, or, for a device that
 * cannot tell (`stopCopyLength` fails with EOPNOTSUPP: a vfio-user server without MIG_DATA_SIZE),
 * its `stopCopyLengthEstimate` or else the pessimistic default. A device found unable is not
 * asked again, and every assumption is listed for the estimate and the summary.
 */
export class StopCopyLengths {
  private readonly assumptions = new Map<string, AssumedStopCopyLength>()

  /** Every length assumed so far, in the order the devices were found unable to tell. */
  get assumed(): ReadonlyArray<AssumedStopCopyLength> {
    return [...this.assumptions.values()]
  }

  /** Whether `device`'s length is an assumption. */
  isAssumed(device: string): boolean {
    return this.assumptions.has(device)
  }

  /** The STOP_COPY length of `device`, asked or assumed. */
  of(device: Device): Effect.Effect<number, DeviceError> {
    const known = this.assumptions.get(device.id)
    if (known !== undefined) return Effect.succeed(known.bytes)
    return device.stopCopyLength.pipe(
      Effect.catchReason("DeviceError", "SessionFailed", (reason, error) => {
        if (!isUnsupported(reason.code)) return Effect.fail(error)
        const estimate = device.stopCopyLengthEstimate
        const assumed: AssumedStopCopyLength =
          estimate === undefined
            ? { device: device.id, bytes: PessimisticStopCopyLength, source: "pessimistic" }
            : { device: device.id, bytes: estimate, source: "estimate" }
        this.assumptions.set(device.id, assumed)
        return Effect.succeed(assumed.bytes)
      })
    )
  }
}

/**
 * How long arcs take, learnt from the arcs this side has run. A latency is looked up for the
 * device and arc; failing that, the device's mean over the arcs it has run; failing that, the
 * group's mean; failing that, an assumption.
 *
 * A device whose P2P quiesce is a full stop (`p2pQuiesceIsStop`: Intel xe) pays a stop's cost
 * for its quiesce arc: that arc and the stop arc after it (see `stopArcOfQuiesce`) are timed
 * alike, by whichever of the two was seen, before any mean is taken.
 */
export class ArcTimings {
  private readonly started = new Map<string, number>()
  private readonly byArc = new Map<string, number>()
  private readonly byDevice = new Map<string, { total: number; count: number }>()
  private total = 0
  private count = 0

  constructor(
    private readonly assumedMs: number,
    /** Whether the device's P2P quiesce is a full stop. */
    private readonly quiesceIsStop: (device: string) => boolean = () => false
  ) {}

  /** Feeds one event of a group transition. */
  observe(event: TransitionEvent): void {
    if (event._tag === "ArcStarted") this.started.set(event.id, event.at)
    if (event._tag !== "ArcDone") return
    const start = this.started.get(event.id)
    if (start === undefined) return
    this.started.delete(event.id)
    const ms = event.at - start
    this.byArc.set(key(event.device, event.arc), ms)
    const d = this.byDevice.get(event.device) ?? { total: 0, count: 0 }
    this.byDevice.set(event.device, { total: d.total + ms, count: d.count + 1 })
    this.total += ms
    this.count += 1
  }

  /** The arc timed alike with `arc` on a full-stop device: its stop arc, or the quiesce it stands for. */
  private stopTwin(arc: Arc): Arc | undefined {
    return stopArcOfQuiesce(arc) ?? quiesceOfStop.get(`${arc.from}>${arc.to}`)
  }

  /** The expected latency of `arc` on `device`, in ms. */
  latency(device: string, arc: Arc): number {
    const seen = this.byArc.get(key(device, arc))
    if (seen !== undefined) return seen
    const twin = this.quiesceIsStop(device) ? this.stopTwin(arc) : undefined
    const twinSeen = twin === undefined ? undefined : this.byArc.get(key(device, twin))
    if (twinSeen !== undefined) return twinSeen
    const d = this.byDevice.get(device)
    if (d !== undefined && d.count > 0) return d.total / d.count
    return this.count > 0 ? this.total / this.count : this.assumedMs
  }
}

const key = (device: string, arc: Arc) => `${device}|${arc.from}>${arc.to}`

/** Full-stop quiesce arcs, by the key of the stop arc they cost. */
const quiesceOfStop = new Map(
  (
    [
      { from: "RUNNING", to: "RUNNING_P2P" },
      { from: "PRE_COPY", to: "PRE_COPY_P2P" }
    ] as const
  ).flatMap((quiesce) => {
    const stop = stopArcOfQuiesce(quiesce)
    return stop === undefined ? [] : [[`${stop.from}>${stop.to}`, quiesce] as const]
  })
)

/**
 * The length of a plan's critical path: the longest chain of arcs through its dependencies
 * (barriers take no time), each arc taking `latency`. This is the least time the plan can
 * take when every arc runs as soon as its dependencies allow.
 */
export const criticalPathMs = (plan: Plan, latency: (device: string, arc: Arc) => number): number => {
  const finish = new Map<string, number>()
  const after = new Map<string, ReadonlyArray<string>>()
  const own = new Map<string, number>()
  for (const a of plan.arcs) {
    after.set(a.id, a.after)
    own.set(a.id, latency(a.device, { from: a.from, to: a.to }))
  }
  for (const b of plan.barriers) {
    after.set(b.id, b.after)
    own.set(b.id, 0)
  }
  const visit = (id: string): number => {
    const known = finish.get(id)
    if (known !== undefined) return known
    let start = 0
    for (const dep of after.get(id) ?? []) start = Math.max(start, visit(dep))
    const end = start + (own.get(id) ?? 0)
    finish.set(id, end)
    return end
  }
  let longest = 0
  for (const a of plan.arcs) longest = Math.max(longest, visit(a.id))
  return longest
}

/**
 * The downtime a switchover started now would cost, and its parts (all in ms):
 *
 *   totalMs = switchoverMs + transferMs + channelMs + resumeMs
 *   switchoverMs = critical path of the source's switchover plan (current states → STOP_COPY)
 *   transferMs   = (remainingBytes + dirtyBytesPerSecond × switchoverMs) / bandwidth
 *                  remainingBytes = Σ stopCopyLength over devices; the devices keep running
 *                  (and dirtying) until their switchover arcs are done
 *   channelMs    = 3 × one-way latency (last bytes, vote, decision) + the journal's write time
 *   resumeMs     = the destination's critical path RESUMING → STOP → quiesced → RUNNING
 *
 * `bandwidth` and the latency are what the channel delivered in the recent rounds (see
 * `ChannelMeter`), the dirty rate what the recent rounds dirtied (see `PrecopyProgress`). It
 * ignores the overlap the session gets by draining each device as soon as it reaches
 * STOP_COPY, which errs high. Stop-copy lengths the devices could not tell are `assumed`: a
 * user's estimate counts like a reported length; the pessimistic default makes `transferMs` and
 * `totalMs` infinite, so that a switchover is never decided on a size nobody knows. Arcs not run yet (the switchover's quiesce and stop-copy arcs, the
 * destination's RESUMING → STOP and on) are timed as the device's other arcs were (see
 * {@link ArcTimings}), which errs low when those arcs are slower than the pre-copy ones.
 */
export interface DowntimeEstimate {
  readonly totalMs: number
  readonly switchoverMs: number
  readonly transferMs: number
  readonly channelMs: number
  readonly resumeMs: number
  readonly remainingBytes: number
  /** Bytes per second the transfer part assumes; `Infinity` when nothing limits or measures it. */
  readonly bandwidth: number
  /** Bytes per second the devices dirty, as measured over the recent rounds (0 before any). */
  readonly dirtyBytesPerSecond: number
  /** Stop-copy lengths in `remainingBytes` that did not come from the devices. */
  readonly assumed: ReadonlyArray<AssumedStopCopyLength>
}

/** The inputs of {@link estimateDowntime}. */
export interface EstimateInputs {
  readonly switchoverMs: number
  readonly remainingBytes: number
  readonly bandwidth: number
  readonly oneWayMs: number
  readonly journalMs: number
  readonly resumeMs: number
  /** Bytes per second the devices dirty (default 0). */
  readonly dirtyBytesPerSecond?: number
  /** Stop-copy lengths in `remainingBytes` that were assumed (default: none). */
  readonly assumed?: ReadonlyArray<AssumedStopCopyLength>
}

/** The downtime estimate from its inputs (see {@link DowntimeEstimate} for the formula). */
export const estimateDowntime = (i: EstimateInputs): DowntimeEstimate => {
  const assumed = i.assumed ?? []
  const unknown = assumed.some((a) => a.source === "pessimistic")
  const dirtyBytesPerSecond = i.dirtyBytesPerSecond ?? 0
  const bytes = i.remainingBytes + (dirtyBytesPerSecond * i.switchoverMs) / 1000
  const transferMs = unknown ? Number.POSITIVE_INFINITY : bytes === 0 ? 0 : (bytes / i.bandwidth) * 1000
  const channelMs = 3 * i.oneWayMs + i.journalMs
  return {
    totalMs: i.switchoverMs + transferMs + channelMs + i.resumeMs,
    switchoverMs: i.switchoverMs,
    transferMs,
    channelMs,
    resumeMs: i.resumeMs,
    remainingBytes: i.remainingBytes,
    bandwidth: i.bandwidth,
    dirtyBytesPerSecond,
    assumed
  }
}

/**
 * One sentence for a summary about the stop-copy lengths that were assumed, or `undefined` when
 * every device told its own.
 */
export const describeAssumedLengths = (assumed: ReadonlyArray<AssumedStopCopyLength>): string | undefined => {
  if (assumed.length === 0) return undefined
  const parts = assumed.map((a) =>
    a.source === "estimate"
      ? `${a.device} ${a.bytes} bytes (its stopCopyLengthEstimate)`
      : `${a.device} unknown (no estimate given: ${PessimisticStopCopyLength} bytes assumed, so the downtime estimate is unbounded)`
  )
  return `stop-copy length not reported by the device, assumed: ${parts.join("; ")}`
}

/**
 * The downtime a source measures, in ms: from the first switchover arc (`switchoverAt`) to the
 * destination group RUNNING. Measured here up to the decision; then COMMIT crosses the channel,
 * the destination resumes (`resumeMs`, as it reports) and confirms: the two crossings take the
 * rest of the time to the confirmation, half each.
 */
export const measuredDowntime = (m: {
  readonly switchoverAt: number
  readonly decidedAt: number
  readonly confirmation: { readonly at: number; readonly resumeMs: number }
}): number =>
  m.decidedAt -
  m.switchoverAt +
  Math.max(0, m.confirmation.at - m.decidedAt - m.confirmation.resumeMs) / 2 +
  m.confirmation.resumeMs
