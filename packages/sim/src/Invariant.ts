import { Data } from "effect"
import type { DeviceStatus, SimEvent } from "./SimEvent.js"

/**
 * A P2P edge: `initiator` may DMA into `target`'s memory. `writesPerSecond`, if set,
 * overrides the fabric's write rate on this edge.
 */
export interface P2PEdge {
  readonly initiator: string
  readonly target: string
  readonly writesPerSecond?: number
}

/** What began a violation: an event of a device, or the fabric finding it so when built. */
export interface ViolationCause {
  readonly device: string
  readonly event: SimEvent["_tag"] | "FabricBuilt"
}

/**
 * The safety invariant broken on an edge: from `at` (until `endedAt`, absent while it still
 * holds) the target could be halted while the initiator could be initiating. Recorded at the
 * instant it begins, even if it lasts no time at all, with both ends' status at that instant
 * and the event that began it.
 */
export interface InvariantViolation {
  readonly edge: P2PEdge
  readonly at: number
  readonly endedAt?: number
  readonly initiator: DeviceStatus
  readonly target: DeviceStatus
  readonly cause: ViolationCause
}

/**
 * P2P writes that landed in a target that could be halted, during `[from, to)` of positive
 * length: they changed the target's memory behind its back, so its saved or resumed state is
 * corrupt.
 */
export interface CorruptingWrite {
  readonly edge: P2PEdge
  readonly from: number
  readonly to: number
  readonly writes: number
  readonly target: DeviceStatus
}

const statusText = (s: DeviceStatus): string =>
  s.inFlight === undefined ? s.state : `${s.state} (arc to ${s.inFlight.to} in flight)`

/** One line describing a violation. */
export const describeViolation = (v: InvariantViolation): string =>
  `${v.edge.initiator} → ${v.edge.target} at ${v.at} ms${v.endedAt === undefined ? " (still open)" : ` until ${v.endedAt} ms`}: ` +
  `target ${statusText(v.target)} while initiator ${statusText(v.initiator)} (began with ${v.cause.event} of ${v.cause.device})`

/** One line describing corrupting writes. */
export const describeCorruptingWrite = (w: CorruptingWrite): string =>
  `${w.writes} write(s) ${w.edge.initiator} → ${w.edge.target} landed in ${statusText(w.target)} during [${w.from}, ${w.to}) ms`

/** The fabric saw the P2P safety invariant broken; every violation and corrupting write is listed. */
export class InvariantViolated extends Data.TaggedError("InvariantViolated")<{
  readonly violations: ReadonlyArray<InvariantViolation>
  readonly corruptingWrites: ReadonlyArray<CorruptingWrite>
}> {
  override get message(): string {
    return [
      `P2P safety invariant violated ${this.violations.length} time(s), ${this.corruptingWrites.length} corrupting write interval(s):`,
      ...this.violations.map(describeViolation),
      ...this.corruptingWrites.map(describeCorruptingWrite)
    ].join("\n  ")
  }
}
