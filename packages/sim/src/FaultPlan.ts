import type { ErrorCode } from "@lockstep/device"
import { type Arc, type State, StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"

/**
 * How many times a fault fires before it is spent: a count, or `"always"`.
 * Every fault fires once unless it says otherwise.
 */
export type FaultTimes = number | "always"

/** Where a failed arc leaves the device: where it started, where it was going, or ERROR. */
export type ArcFailureOutcome = "original" | "target" | "error"

/**
 * Fail an arc: the device takes the arc's latency, then fails with `ArcFailed` and is left
 * per `leaveIn` (default `"original"`). The arc is selected by `from` / `to` (either may be
 * omitted to match any) and by `nth`, the 1-based count of arcs the device has performed
 * (rejected requests do not count). All given selectors must match.
 */
export interface FailArc {
  readonly _tag: "FailArc"
  readonly from?: State
  readonly to?: State
  readonly nth?: number
  readonly leaveIn?: ArcFailureOutcome
  /** Default `EIO`. */
  readonly code?: ErrorCode
  readonly times?: FaultTimes
}

/**
 * Hang an arc: the arc never completes until its fiber is interrupted. Interruption leaves
 * the device in the arc's original state with nothing in flight. Selected as for `FailArc`.
 */
export interface HangArc {
  readonly _tag: "HangArc"
  readonly from?: State
  readonly to?: State
  readonly nth?: number
  readonly times?: FaultTimes
}

/**
 * Land an interrupted arc anyway: when the arc's request is interrupted (a timeout, a cancelled
 * transition), the device does not cancel it but lands in its target (or in ERROR, per
 * `leaveIn`), as the uAPI allows: the state after a failed or interrupted request is unknown,
 * and the caller must read it back. Selected as for `FailArc`; it matters only for an arc that
 * is interrupted (combine it with `HangArc` to make one that always is).
 */
export interface LandOnInterrupt {
  readonly _tag: "LandOnInterrupt"
  readonly from?: State
  readonly to?: State
  readonly nth?: number
  /** Default `"target"`. */
  readonly leaveIn?: "target" | "error"
  readonly times?: FaultTimes
}

/**
 * Corrupt the saved data: one byte of the saving stream, at offset `atByte` of the session
 * (default: the first byte of the first page's data), is flipped as it leaves the device.
 * `nth` selects the 1-based saving session of the device (default: any).
 */
export interface CorruptData {
  readonly _tag: "CorruptData"
  readonly atByte?: number
  readonly nth?: number
  readonly times?: FaultTimes
}

/**
 * Truncate the saved data: the saving stream ends after `afterBytes` bytes of the session
 * (default: just before the trailer). From there a PRE_COPY read answers `NoData`, pre-copy
 * info reports nothing left, and a STOP_COPY read answers `End`. `nth` as for `CorruptData`.
 */
export interface TruncateData {
  readonly _tag: "TruncateData"
  readonly afterBytes?: number
  readonly nth?: number
  readonly times?: FaultTimes
}

/**
 * Fail a read with `SessionFailed`; nothing is consumed, the next read carries on.
 * `nth` is the 1-based count of reads made in a saving state (default: the next one).
 */
export interface FailRead {
  readonly _tag: "FailRead"
  readonly nth?: number
  /** Default `EIO`. */
  readonly code?: ErrorCode
  readonly times?: FaultTimes
}

/**
 * Fail a write with `SessionFailed`; nothing is taken, the next write carries on.
 * `nth` is the 1-based count of writes made in RESUMING (default: the next one).
 */
export interface FailWrite {
  readonly _tag: "FailWrite"
  readonly nth?: number
  /** Default `EIO`. */
  readonly code?: ErrorCode
  readonly times?: FaultTimes
}

/** One injected fault of a simulated device. */
export type Fault = FailArc | HangArc | LandOnInterrupt | CorruptData | TruncateData | FailRead | FailWrite

/** The faults of one simulated device, deterministic: they fire on counts, never on chance. */
export type FaultPlan = ReadonlyArray<Fault>

const Nth = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const ByteOffset = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const Times = Schema.Union([Nth, Schema.Literal("always")])
const Code = Schema.String.check(Schema.isPattern(/^E[A-Z0-9]+$/))
const arcSelector = {
  from: Schema.optionalKey(StateSchema),
  to: Schema.optionalKey(StateSchema),
  nth: Schema.optionalKey(Nth)
}

const FaultCodec = Schema.Union([
  Schema.TaggedStruct("FailArc", {
    ...arcSelector,
    leaveIn: Schema.optionalKey(Schema.Literals(["original", "target", "error"])),
    code: Schema.optionalKey(Code),
    times: Schema.optionalKey(Times)
  }),
  Schema.TaggedStruct("HangArc", { ...arcSelector, times: Schema.optionalKey(Times) }),
  Schema.TaggedStruct("LandOnInterrupt", {
    ...arcSelector,
    leaveIn: Schema.optionalKey(Schema.Literals(["target", "error"])),
    times: Schema.optionalKey(Times)
  }),
  Schema.TaggedStruct("CorruptData", {
    atByte: Schema.optionalKey(ByteOffset),
    nth: Schema.optionalKey(Nth),
    times: Schema.optionalKey(Times)
  }),
  Schema.TaggedStruct("TruncateData", {
    afterBytes: Schema.optionalKey(ByteOffset),
    nth: Schema.optionalKey(Nth),
    times: Schema.optionalKey(Times)
  }),
  Schema.TaggedStruct("FailRead", {
    nth: Schema.optionalKey(Nth),
    code: Schema.optionalKey(Code),
    times: Schema.optionalKey(Times)
  }),
  Schema.TaggedStruct("FailWrite", {
    nth: Schema.optionalKey(Nth),
    code: Schema.optionalKey(Code),
    times: Schema.optionalKey(Times)
  })
]).annotate({ identifier: "Fault", description: "one injected fault of a simulated device" })

/** A fault as written in a group file: states may be names or uAPI numbers. */
export type FaultEncoded = typeof FaultCodec.Encoded

/** Decodes one fault from its JSON form (`{"_tag": "FailArc", "from": "STOP", "to": "STOP_COPY"}`). */
export const Fault: Schema.Codec<Fault, FaultEncoded> = FaultCodec

/** Decodes a fault plan: a list of faults. */
export const FaultPlan: Schema.Codec<FaultPlan, ReadonlyArray<FaultEncoded>> = Schema.Array(FaultCodec)

/** What a matched arc fault does to the arc. */
export type ArcFault =
  | { readonly _tag: "Fail"; readonly leaveIn: ArcFailureOutcome; readonly code: ErrorCode }
  | { readonly _tag: "Hang" }

/** What the data faults do to one saving session. */
export interface SessionFaults {
  /** Stream offset of the byte to flip, or -1. */
  readonly corruptAt: number
  /** Stream offset at which the stream ends, -1 for none, or `"trailer"` to drop the trailer. */
  readonly truncateAt: number | "trailer"
}

const firings = (times: FaultTimes | undefined): number =>
  times === "always" ? Number.POSITIVE_INFINITY : (times ?? 1)

const matchesArc = (f: FailArc | HangArc | LandOnInterrupt, arc: Arc, nth: number): boolean =>
  (f.from === undefined || f.from === arc.from) &&
  (f.to === undefined || f.to === arc.to) &&
  (f.nth === undefined || f.nth === nth)

/**
 * A fault plan being played: which faults are still armed. Faults are tried in plan order;
 * the first armed one that matches fires and loses one firing.
 */
export class FaultDeck {
  private readonly left: Array<number>

  constructor(readonly plan: FaultPlan) {
    this.left = plan.map((f) => firings(f.times))
  }

  private fire(i: number): void {
    this.left[i] = (this.left[i] ?? 0) - 1
  }

  private armed(i: number): boolean {
    return (this.left[i] ?? 0) > 0
  }

  /** The fault, if any, for the `nth` arc the device performs. */
  arc(arc: Arc, nth: number): ArcFault | undefined {
    for (let i = 0; i < this.plan.length; i++) {
      const f = this.plan[i]
      if (f === undefined || !this.armed(i)) continue
      if ((f._tag === "FailArc" || f._tag === "HangArc") && matchesArc(f, arc, nth)) {
        this.fire(i)
        return f._tag === "HangArc"
          ? { _tag: "Hang" }
          : { _tag: "Fail", leaveIn: f.leaveIn ?? "original", code: f.code ?? "EIO" }
      }
    }
    return undefined
  }

  /** Where the `nth` arc lands if it is interrupted: `undefined` to cancel it (the device stays where it was). */
  interrupted(arc: Arc, nth: number): "target" | "error" | undefined {
    for (let i = 0; i < this.plan.length; i++) {
      const f = this.plan[i]
      if (f === undefined || !this.armed(i) || f._tag !== "LandOnInterrupt" || !matchesArc(f, arc, nth)) continue
      this.fire(i)
      return f.leaveIn ?? "target"
    }
    return undefined
  }

  /** The error code, if any, for the `nth` read (`"FailRead"`) or write (`"FailWrite"`). */
  access(tag: "FailRead" | "FailWrite", nth: number): ErrorCode | undefined {
    for (let i = 0; i < this.plan.length; i++) {
      const f = this.plan[i]
      if (f === undefined || !this.armed(i) || f._tag !== tag) continue
      if (f.nth === undefined || f.nth === nth) {
        this.fire(i)
        return f.code ?? "EIO"
      }
    }
    return undefined
  }

  /** The data faults of the `nth` saving session; `firstPageByte` is where page data starts. */
  session(nth: number, firstPageByte: number): SessionFaults {
    let corruptAt = -1
    let truncateAt: number | "trailer" = -1
    for (let i = 0; i < this.plan.length; i++) {
      const f = this.plan[i]
      if (f === undefined || !this.armed(i) || (f._tag !== "CorruptData" && f._tag !== "TruncateData")) continue
      if (f.nth !== undefined && f.nth !== nth) continue
      if (f._tag === "CorruptData" && corruptAt < 0) {
        this.fire(i)
        corruptAt = f.atByte ?? firstPageByte
      } else if (f._tag === "TruncateData" && truncateAt === -1) {
        this.fire(i)
        truncateAt = f.afterBytes ?? "trailer"
      }
    }
    return { corruptAt, truncateAt }
  }
}
