import type { Arc, State } from "@lockstep/fsm"

/**
 * What a timeline knows of a device's state: a migration state, or `UNKNOWN` from a failed arc
 * until the state is read back (after a failure the real state must be read, never assumed).
 */
export type TimelineState = State | "UNKNOWN"

/** One lane of the timeline: a device of the group. */
export interface TimelineDevice {
  readonly id: string
  /** `pci`, `mdev`, `ccw`, `ap`, … (shown beside the id). */
  readonly kind: string
  /** The state the device was in when the timeline begins. */
  readonly initial: TimelineState
}

/** A device resting in one state during `[from, to]` (no arc in flight). */
export interface StateSpan {
  readonly _tag: "StateSpan"
  readonly device: string
  readonly state: TimelineState
  readonly from: number
  readonly to: number
}

/**
 * An arc of a device in flight during `[from, to]`: `done` landed in `arc.to`; `failed` ended
 * in an error (`error` says which) and the device's state was unknown until read back;
 * `running` was still in flight when the timeline ended.
 */
export interface ArcSpan {
  readonly _tag: "ArcSpan"
  readonly device: string
  /** The plan's node id (`a7`); ids restart with every plan. */
  readonly id: string
  readonly arc: Arc
  readonly from: number
  readonly to: number
  readonly outcome: "done" | "failed" | "running"
  readonly error?: string | undefined
}

/**
 * An arc that was ready as far as its own device goes (the device's previous arc done, or the
 * plan made) but started later, during `[from, to]`, because it waited for another device.
 * `waitedFor` is the arc of another device whose end released it (the last of the plan's
 * dependencies to finish), when known; absent when the wait had no such cause (a concurrency
 * limit, a rollback whose plan is not reported).
 */
export interface Wait {
  readonly _tag: "Wait"
  readonly device: string
  /** The id of the arc that waited. */
  readonly id: string
  readonly from: number
  readonly to: number
  readonly waitedFor?:
    | { readonly device: string; readonly id: string; readonly arc: Arc; readonly at: number }
    | undefined
}

/** A device was reset at `at` (which returns it to RUNNING); `from` is the state it was reset from. */
export interface Reset {
  readonly _tag: "Reset"
  readonly device: string
  readonly from: TimelineState
  readonly at: number
}

/** A device found in ERROR was left there for diagnosis at `at` (the `quarantine` policy). */
export interface Quarantine {
  readonly _tag: "Quarantine"
  readonly device: string
  readonly at: number
}

/** A group rollback during `[from, to]`: `ok` when every device got back where it had to. */
export interface Rollback {
  readonly _tag: "Rollback"
  readonly from: number
  readonly to: number
  readonly ok: boolean
  /** Why it rolled back (the first failure's message). */
  readonly cause: string
}

/**
 * How a phase window is drawn: `normal` as a light band, `downtime` highlighted (the
 * switchover window, when the guest is stopped).
 */
export type PhaseEmphasis = "normal" | "downtime"

/**
 * A named window of the run across every lane, such as `pre-copy round 1` or
 * `switchover (downtime 23 ms)`. Phases may nest or overlap; each gets its own band.
 */
export interface Phase {
  readonly _tag: "Phase"
  readonly label: string
  readonly from: number
  readonly to: number
  readonly emphasis: PhaseEmphasis
}

/**
 * The P2P safety invariant broken on the edge `initiator → target` from `from` until `to`
 * (absent while it still held when the timeline ended). Drawn on the target's lane.
 */
export interface Violation {
  readonly _tag: "Violation"
  readonly initiator: string
  readonly target: string
  readonly from: number
  readonly to?: number | undefined
  /** A one-line description (shown as the marker's tooltip). */
  readonly description: string
}

/** `writes` P2P writes that landed in `target` while it could be halted, during `[from, to)`. */
export interface CorruptingWrites {
  readonly _tag: "CorruptingWrites"
  readonly initiator: string
  readonly target: string
  readonly from: number
  readonly to: number
  readonly writes: number
}

/**
 * An instant worth pointing at: on one device's lane when `device` is given, otherwise across
 * every lane with its label on top (a transition starting, a switchover acknowledged, …).
 */
export interface Mark {
  readonly _tag: "Mark"
  readonly at: number
  readonly label: string
  readonly device?: string | undefined
}

/** Everything a timeline draws besides its lanes. Times are milliseconds of one clock. */
export type TimelineEntry =
  | StateSpan
  | ArcSpan
  | Wait
  | Reset
  | Quarantine
  | Rollback
  | Phase
  | Violation
  | CorruptingWrites
  | Mark

/**
 * The P2P topology of the devices on the lanes, drawn beside them: `domains` are sets of devices
 * that may each write into every other (a shared IOMMU), `edges` are `[initiator, target]`
 * pairs beyond those.
 */
export interface P2PTopology {
  readonly domains?: ReadonlyArray<ReadonlyArray<string>> | undefined
  readonly edges?: ReadonlyArray<readonly [string, string]> | undefined
}

/**
 * The plain data a timeline picture is drawn from: the devices (one lane each, in order) and
 * the entries. It holds no behaviour and serialises as JSON, so any producer (the recorder, a
 * migration session, a file) can build one, and new kinds of phases need no new code.
 */
export interface TimelineInput {
  readonly devices: ReadonlyArray<TimelineDevice>
  readonly entries: ReadonlyArray<TimelineEntry>
  /** Where the picture begins; default: the earliest time of any entry. */
  readonly start?: number | undefined
  /** Where the picture ends; default: the latest time of any entry. */
  readonly end?: number | undefined
  /** A title drawn above the picture. */
  readonly title?: string | undefined
  /**
   * Whether the P2P invariant was checked for this run: the legend then says so even when no
   * violation was found, instead of staying silent.
   */
  readonly invariantChecked?: boolean | undefined
  /** Who may write into whom, drawn in a column beside the lanes. */
  readonly p2p?: P2PTopology | undefined
}
