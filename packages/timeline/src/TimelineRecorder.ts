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

/** A recorder for one group's timeline. */
export const makeTimelineRecorder = (options: TimelineRecorderOptions = {}): TimelineRecorder => {
  const lanes = new Map<string, Lane>()
  const entries: Array<TimelineEntry> = []
  let scope: PlanScope = { after: new Map(), ended: new Map() }
  let rollback: { readonly from: number; readonly cause: string } | undefined
  let transitions = 0
  let invariantChecked = false
  let first: number | undefined
  let last: number | undefined

  const seen = (at: number) => {
    first = first === undefined ? at : Math.min(first, at)
    last = last === undefined ? at : Math.max(last, at)
  }
  const laneOf = (id: string, kind = ""): Lane => {
    const existing = lanes.get(id)
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
    lanes.set(id, lane)
    return lane
  }
  for (const d of options.devices ?? []) laneOf(d.id, d.kind)

  const spanOf = (lane: Lane, to: number): StateSpan | undefined =>
    lane.since === undefined || to <= lane.since
      ? undefined
      : { _tag: "StateSpan", device: lane.id, state: lane.state, from: lane.since, to }

  /** What the device is known to be in from `at` on. An unknown state learnt later was that state all along. */
  const learn = (lane: Lane, state: TimelineState, at: number) => {
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
    if (span !== undefined) entries.push(span)
    lane.state = state
    lane.since = at
  }
  const learnAll = (states: ReadStates, at: number) => {
    for (const [id, state] of Object.entries(states)) learn(laneOf(id), state, at)
  }

  const onEvent = (event: RecordedTransition): void => {
    seen(event.at)
    switch (event._tag) {
      case "PlanReady": {
        transitions++
        scope = { after: expandAfter(event.plan), ended: new Map() }
        for (const [id, state] of Object.entries(event.plan.initial)) {
          const lane = laneOf(id)
          learn(lane, state, event.at)
          lane.readyAt = event.at
        }
        if (options.markTransitions ?? true)
          entries.push({ _tag: "Mark", at: event.at, label: `#${transitions} ${targetOf(event.plan)}` })
        return
      }
      case "ArcStarted": {
        const lane = laneOf(event.device)
        learn(lane, event.arc.from, event.at)
        const span = spanOf(lane, event.at)
        if (span !== undefined) entries.push(span)
        lane.since = event.at
        lane.inFlight = { id: event.id, arc: event.arc, at: event.at }
        if (lane.readyAt !== undefined && event.at > lane.readyAt) {
          // The dependency that released the arc is the last of its other-device dependencies to end.
          let cause:
            | { readonly device: string; readonly id: string; readonly arc: Arc; readonly at: number }
            | undefined
          for (const id of scope.after.get(event.id) ?? []) {
            const ended = scope.ended.get(id)
            if (ended === undefined || ended.device === event.device || ended.at > event.at) continue
            if (cause === undefined || ended.at > cause.at) cause = { id, ...ended }
          }
          entries.push({
            _tag: "Wait",
            device: event.device,
            id: event.id,
            from: lane.readyAt,
            to: event.at,
            waitedFor: cause
          })
        }
        lane.readyAt = undefined
        return
      }
      case "ArcDone":
      case "ArcFailed": {
        const lane = laneOf(event.device)
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
        entries.push(arcSpan)
        lane.inFlight = undefined
        // After a failure the state is unknown until it is read back.
        lane.state = failed ? "UNKNOWN" : event.arc.to
        lane.since = event.at
        lane.readyAt = failed ? undefined : event.at
        if (!failed) scope.ended.set(event.id, { device: event.device, arc: event.arc, at: event.at })
        return
      }
      case "RollbackBegun": {
        rollback = { from: event.at, cause: event.cause.message }
        scope = { after: new Map(), ended: new Map() }
        learnAll(event.states, event.at)
        for (const lane of lanes.values()) lane.readyAt = undefined
        return
      }
      case "DeviceReset": {
        const lane = laneOf(event.device)
        learn(lane, event.from, event.at)
        entries.push({ _tag: "Reset", device: event.device, from: event.from, at: event.at })
        learn(lane, "RUNNING", event.at)
        return
      }
      case "DeviceQuarantined": {
        entries.push({ _tag: "Quarantine", device: event.device, at: event.at })
        return
      }
      case "RollbackDone": {
        learnAll(event.states, event.at)
        entries.push({
          _tag: "Rollback",
          from: rollback?.from ?? event.at,
          to: event.at,
          ok: event.ok,
          cause: rollback?.cause ?? ""
        })
        rollback = undefined
        return
      }
    }
  }

  const addPhase = (label: string, from: number, to: number, emphasis?: PhaseEmphasis): void => {
    seen(from)
    seen(to)
    entries.push({
      _tag: "Phase",
      label,
      from: Math.min(from, to),
      to: Math.max(from, to),
      emphasis: emphasis ?? (downtimeLabel.test(label) ? "downtime" : "normal")
    })
  }

  const addMark = (at: number, label: string, device?: string): void => {
    seen(at)
    entries.push({ _tag: "Mark", at, label, device })
  }

  const addViolations = (
    violations: ReadonlyArray<InvariantViolation>,
    corruptingWrites: ReadonlyArray<CorruptingWrite> = []
  ): void => {
    invariantChecked = true
    for (const entry of fabricEntries(violations, corruptingWrites)) {
      seen(entry.from)
      if (entry.to !== undefined) seen(entry.to)
      entries.push(entry)
    }
  }

  const toInput = (toOptions: ToInputOptions = {}): TimelineInput => {
    const end = toOptions.end ?? last ?? 0
    const open: Array<TimelineEntry> = []
    for (const lane of lanes.values()) {
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
    if (rollback !== undefined) {
      const unfinished: Rollback = { _tag: "Rollback", from: rollback.from, to: end, ok: false, cause: rollback.cause }
      open.push(unfinished)
    }
    const devices: Array<TimelineDevice> = [...lanes.values()].map((lane) => ({
      id: lane.id,
      kind: lane.kind,
      initial: lane.initial ?? "UNKNOWN"
    }))
    return {
      devices,
      entries: [...entries, ...open],
      start: first,
      end,
      title: options.title,
      invariantChecked,
      ...(options.p2p === undefined ? {} : { p2p: options.p2p })
    }
  }

  return { onEvent, addPhase, addMark, addViolations, toInput }
}
