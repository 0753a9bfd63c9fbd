import type { Arc, State } from "@lockstep/fsm"
import { expandAfter, type Topology } from "@lockstep/group"
import { type CorruptingWrite, describeViolation, type InvariantViolation } from "@lockstep/sim"
import type {
  ArcSpan,
  CorruptingWrites,
  P2PTopology,
  PhaseEmphasis,
  Rollback,
  StateSpan,
  TimelineDevice,
  TimelineEntry,
  TimelineInput,
  TimelineState,
  Violation
} from "./TimelineInput.js"
import type { RecordedPlan, RecordedTransition } from "./TransitionRecord.js"

/** The P2P topology of a group, as the timeline draws it: its domains and its explicit edges. */
export const p2pOf = (topology: Topology): P2PTopology => ({
  domains: topology.domains.map((d) => d.members),
  edges: topology.explicitEdges
})

/** Each device's state after a failure, `UNKNOWN` where it could not be read. */
type ReadStates = Readonly<Record<string, State | "UNKNOWN">>

/**
 * The events of a group transition, as far as the recorder reads them (`RecordedTransition`).
 * The coordinator's `TransitionEvent` is one (the recorder takes them from the executor's
 * `onEvent`), and so is one read back from an events file: the timeline states what it reads
 * rather than depending on the coordinator.
 */
export type RecordedEvent = RecordedTransition

/**
 * What a fabric saw of the P2P invariant, as the timeline draws it: each violation (on its
 * edge, from when it began to when it ended, with its description) and each run of corrupting
 * writes.
 */
export const fabricEntries = (
  violations: ReadonlyArray<InvariantViolation>,
  corruptingWrites: ReadonlyArray<CorruptingWrite>
): Array<Violation | CorruptingWrites> => [
  ...violations.map(
    (v): Violation => ({
      _tag: "Violation",
      initiator: v.edge.initiator,
      target: v.edge.target,
      from: v.at,
      to: v.endedAt,
      description: describeViolation(v)
    })
  ),
  ...corruptingWrites.map(
    (w): CorruptingWrites => ({
      _tag: "CorruptingWrites",
      initiator: w.edge.initiator,
      target: w.edge.target,
      from: w.from,
      to: w.to,
      writes: w.writes
    })
  )
]

/** A device the recorder should draw a lane for before any event names it. */
export interface RecordedDevice {
  readonly id: string
  readonly kind: string
}

/** Options of `makeTimelineRecorder`. */
export interface TimelineRecorderOptions {
  /**
   * The devices, in lane order (a `Group`'s `devices` fit). Devices that only events name get
   * a lane after these, in the order they first appear.
   */
  readonly devices?: ReadonlyArray<RecordedDevice> | undefined
  readonly title?: string | undefined
  /** Mark the start of every transition with its target on top of the picture. Default true. */
  readonly markTransitions?: boolean | undefined
  /** The group's P2P topology, drawn beside the lanes (`p2pOf(group.topology)` gives it). */
  readonly p2p?: P2PTopology | undefined
}

/** Options of `TimelineRecorder.toInput`. */
export interface ToInputOptions {
  /** Where the timeline ends (open states and arcs are drawn up to it); default: the last time seen. */
  readonly end?: number | undefined
}

/**
 * Collects what happens to a group into a `TimelineInput`: the events of any number of group
 * transitions in sequence (pass `onEvent` as the executor's `onEvent`), the phases of a
 * migration, and the invariant violations a fabric saw.
 */
export interface TimelineRecorder {
  /** Takes one transition event (any `TransitionEvent`); synchronous, as the executor requires. */
  readonly onEvent: (event: RecordedTransition) => void
  /**
   * Adds a named window across every lane. `emphasis` defaults to `downtime` when the label
   * names a switchover or downtime, `normal` otherwise.
   */
  readonly addPhase: (label: string, from: number, to: number, emphasis?: PhaseEmphasis) => void
  /** Adds an instant to point at, on one lane or (without `device`) across all of them. */
  readonly addMark: (at: number, label: string, device?: string) => void
  /**
   * Adds the invariant violations (and, if given, the corrupting writes) a fabric saw, and notes
   * that the invariant was checked: the picture then says so even when the lists are empty.
   */
  readonly addViolations: (
    violations: ReadonlyArray<InvariantViolation>,
    corruptingWrites?: ReadonlyArray<CorruptingWrite>
  ) => void
  /** The timeline so far; the recorder may go on recording afterwards. */
  readonly toInput: (options?: ToInputOptions) => TimelineInput
}

interface Lane {
  readonly id: string
  kind: string
  initial: TimelineState | undefined
  /** The state the device rests in since `since` (an arc in flight leaves it there until done). */
  state: TimelineState
  since: number | undefined
  inFlight: { readonly id: string; readonly arc: Arc; readonly at: number } | undefined
  /** When the device's next arc was ready as far as the device itself goes; unknown in a rollback. */
  readyAt: number | undefined
}

/** The ids of one plan: ids restart with every plan, and a rollback's plan is not reported. */
interface PlanScope {
  readonly after: ReadonlyMap<string, ReadonlyArray<string>>
  readonly ended: Map<string, { readonly device: string; readonly arc: Arc; readonly at: number }>
}

const downtimeLabel = /switchover|downtime/i

/** What a plan moves the group to, for its mark: one state for all movers, or `mixed`. */
const targetOf = (plan: typeof RecordedPlan.Type): string => {
  const targets = new Set(plan.arcs.map((a) => plan.target[a.device]))
  const [only] = targets
  return plan.arcs.length === 0 ? "no arcs" : targets.size === 1 && only !== undefined ? `→ ${only}` : "→ mixed"
}

type PlanReady = Extract<RecordedTransition, { readonly _tag: "PlanReady" }>
/** An arc's start or end (the record has one shape for ArcStarted and ArcDone). */
type ArcEvent = Extract<RecordedTransition, { readonly arc: Arc }>

/** The state span a lane rests in from `since` to `to`, if it is known and not empty. */
const spanOf = (lane: Lane, to: number): StateSpan | undefined =>
  lane.since === undefined || to <= lane.since
    ? undefined
    : { _tag: "StateSpan", device: lane.id, state: lane.state, from: lane.since, to }

/** What a recorder holds: a lane per device, the entries so far, the plan running and a rollback begun. */
class RecorderState {
  private readonly lanes = new Map<string, Lane>()
  private readonly entries: Array<TimelineEntry> = []
  private scope: PlanScope = { after: new Map(), ended: new Map() }
  private rollback: { readonly from: number; readonly cause: string } | undefined
  private transitions = 0
  private invariantChecked = false
  private first: number | undefined
  private last: number | undefined

  constructor(private readonly options: TimelineRecorderOptions) {
    for (const d of options.devices ?? []) this.laneOf(d.id, d.kind)
  }

  private seen(at: number): void {
    this.first = this.first === undefined ? at : Math.min(this.first, at)
    this.last = this.last === undefined ? at : Math.max(this.last, at)
  }

  private laneOf(id: string, kind = ""): Lane {
    const existing = this.lanes.get(id)
    if (existing !== undefined) return existing
    const lane: Lane = {
      id,
      kind,
      initial: undefined,
      state: "UNKNOWN",
      since: undefined,
      inFlight: undefined,
      readyAt: undefined
    }
    this.lanes.set(id, lane)
    return lane
  }

  /** What the device is known to be in from `at` on. An unknown state learnt later was that state all along. */
  private learn(lane: Lane, state: TimelineState, at: number): void {
    if (lane.since === undefined) {
      lane.initial = state
      lane.state = state
      lane.since = at
      return
    }
    if (state === lane.state) return
    if (lane.state === "UNKNOWN" && state !== "UNKNOWN") {
      lane.state = state
      return
    }
    const span = spanOf(lane, at)
    if (span !== undefined) this.entries.push(span)
    lane.state = state
    lane.since = at
  }

  private learnAll(states: ReadStates, at: number): void {
    for (const [id, state] of Object.entries(states)) this.learn(this.laneOf(id), state, at)
  }

  onEvent(event: RecordedTransition): void {
    this.seen(event.at)
    switch (event._tag) {
      case "PlanReady":
        this.planReady(event)
        return
      case "ArcStarted":
        this.arcStarted(event)
        return
      case "ArcDone":
      case "ArcFailed":
        this.arcEnded(event)
        return
      case "RollbackBegun": {
        this.rollback = { from: event.at, cause: event.cause.message }
        this.scope = { after: new Map(), ended: new Map() }
        this.learnAll(event.states, event.at)
        for (const lane of this.lanes.values()) lane.readyAt = undefined
        return
      }
      case "DeviceReset": {
        const lane = this.laneOf(event.device)
        this.learn(lane, event.from, event.at)
        this.entries.push({ _tag: "Reset", device: event.device, from: event.from, at: event.at })
        this.learn(lane, "RUNNING", event.at)
        return
      }
      case "DeviceQuarantined": {
        this.entries.push({ _tag: "Quarantine", device: event.device, at: event.at })
        return
      }
      case "RollbackDone": {
        this.learnAll(event.states, event.at)
        this.entries.push({
          _tag: "Rollback",
          from: this.rollback?.from ?? event.at,
          to: event.at,
          ok: event.ok,
          cause: this.rollback?.cause ?? ""
        })
        this.rollback = undefined
        return
      }
    }
  }

  private planReady(event: PlanReady): void {
    this.transitions++
    this.scope = { after: expandAfter(event.plan), ended: new Map() }
    for (const [id, state] of Object.entries(event.plan.initial)) {
      const lane = this.laneOf(id)
      this.learn(lane, state, event.at)
      lane.readyAt = event.at
    }
    if (this.options.markTransitions ?? true)
      this.entries.push({ _tag: "Mark", at: event.at, label: `#${this.transitions} ${targetOf(event.plan)}` })
  }

  /** An arc begins: the state span before it ends, and a wait is drawn if the device was ready earlier. */
  private arcStarted(event: ArcEvent): void {
    const lane = this.laneOf(event.device)
    this.learn(lane, event.arc.from, event.at)
    const span = spanOf(lane, event.at)
    if (span !== undefined) this.entries.push(span)
    lane.since = event.at
    lane.inFlight = { id: event.id, arc: event.arc, at: event.at }
    if (lane.readyAt !== undefined && event.at > lane.readyAt) {
      // The dependency that released the arc is the last of its other-device dependencies to end.
      let cause: { readonly device: string; readonly id: string; readonly arc: Arc; readonly at: number } | undefined
      for (const id of this.scope.after.get(event.id) ?? []) {
        const ended = this.scope.ended.get(id)
        if (ended === undefined || ended.device === event.device || ended.at > event.at) continue
        if (cause === undefined || ended.at > cause.at) cause = { id, ...ended }
      }
      this.entries.push({
        _tag: "Wait",
        device: event.device,
        id: event.id,
        from: lane.readyAt,
        to: event.at,
        waitedFor: cause
      })
    }
    lane.readyAt = undefined
  }

  private arcEnded(event: ArcEvent): void {
    const lane = this.laneOf(event.device)
    const started = lane.inFlight?.id === event.id ? lane.inFlight.at : event.at
    const failed = event._tag === "ArcFailed"
    const arcSpan: ArcSpan = {
      _tag: "ArcSpan",
      device: event.device,
      id: event.id,
      arc: event.arc,
      from: started,
      to: event.at,
      outcome: failed ? "failed" : "done",
      error: failed ? event.error.message : undefined
    }
    this.entries.push(arcSpan)
    lane.inFlight = undefined
    // After a failure the state is unknown until it is read back.
    lane.state = failed ? "UNKNOWN" : event.arc.to
    lane.since = event.at
    lane.readyAt = failed ? undefined : event.at
    if (!failed) this.scope.ended.set(event.id, { device: event.device, arc: event.arc, at: event.at })
  }

  addPhase(label: string, from: number, to: number, emphasis?: PhaseEmphasis): void {
    this.seen(from)
    this.seen(to)
    this.entries.push({
      _tag: "Phase",
      label,
      from: Math.min(from, to),
      to: Math.max(from, to),
      emphasis: emphasis ?? (downtimeLabel.test(label) ? "downtime" : "normal")
    })
  }

  addMark(at: number, label: string, device?: string): void {
    this.seen(at)
    this.entries.push({ _tag: "Mark", at, label, device })
  }

  addViolations(violations: ReadonlyArray<InvariantViolation>, corruptingWrites: ReadonlyArray<CorruptingWrite>): void {
    this.invariantChecked = true
    for (const entry of fabricEntries(violations, corruptingWrites)) {
      this.seen(entry.from)
      if (entry.to !== undefined) this.seen(entry.to)
      this.entries.push(entry)
    }
  }

  /** The timeline so far: what is still open (a state, an arc in flight, a rollback) ends at `end`. */
  toInput(toOptions: ToInputOptions): TimelineInput {
    const end = toOptions.end ?? this.last ?? 0
    const open: Array<TimelineEntry> = []
    for (const lane of this.lanes.values()) {
      const span = spanOf(lane, end)
      if (span !== undefined) open.push(span)
      if (lane.inFlight !== undefined)
        open.push({
          _tag: "ArcSpan",
          device: lane.id,
          id: lane.inFlight.id,
          arc: lane.inFlight.arc,
          from: lane.inFlight.at,
          to: end,
          outcome: "running"
        })
    }
    if (this.rollback !== undefined) {
      const { from, cause } = this.rollback
      const unfinished: Rollback = { _tag: "Rollback", from, to: end, ok: false, cause }
      open.push(unfinished)
    }
    const devices: Array<TimelineDevice> = [...this.lanes.values()].map((lane) => ({
      id: lane.id,
      kind: lane.kind,
      initial: lane.initial ?? "UNKNOWN"
    }))
    return {
      devices,
      entries: [...this.entries, ...open],
      start: this.first,
      end,
      title: this.options.title,
      invariantChecked: this.invariantChecked,
      ...(this.options.p2p === undefined ? {} : { p2p: this.options.p2p })
    }
  }
}

/** A recorder for one group's timeline. */
export const makeTimelineRecorder = (options: TimelineRecorderOptions = {}): TimelineRecorder => {
  const state = new RecorderState(options)
  return {
    onEvent: (event) => state.onEvent(event),
    addPhase: (label, from, to, emphasis) => state.addPhase(label, from, to, emphasis),
    addMark: (at, label, device) => state.addMark(at, label, device),
    addViolations: (violations, corruptingWrites = []) => state.addViolations(violations, corruptingWrites),
    toInput: (toOptions = {}) => state.toInput(toOptions)
  }
}
