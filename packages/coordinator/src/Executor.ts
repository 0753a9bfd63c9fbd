import { type Device, DeviceError } from "@lockstep/device"
import { path, type State, stateClass, supportsState } from "@lockstep/fsm"
import {
  deviceEntry,
  emptyDeviceRecord,
  type Group,
  type GroupRuntime,
  type Plan,
  putDevice,
  reportedStates
} from "@lockstep/group"
import { Clock, Effect, Exit, Fiber, Option, Result } from "effect"
import { type ArcEvent, type GraphNode, type RunOptions, runGraph, runGraphMarking } from "./ArcRunner.js"
import {
  type FailureCause,
  type FinalStates,
  StateUnreadable,
  TransitionFailed,
  TransitionInterrupted,
  TransitionRefused
} from "./ExecutorError.js"
import type { PlanError } from "./PlanError.js"
import { planTransition, type StateAssignment } from "./Planner.js"

/**
 * What to do with a device found in ERROR after a failure:
 * - `reset`: reset it (ERROR → RUNNING; both are initiating, so this never breaks the invariant);
 *   it stays in RUNNING, where its bus mastering is off until its next arc, so its targets still
 *   roll back to halted starting states;
 * - `quarantine`: leave it in ERROR for diagnosis, and keep every device it may write into out
 *   of the halted states (a target whose starting state is halted is reset instead).
 */
export type ErrorPolicy = "reset" | "quarantine"

/** Options of a group transition. */
export interface TransitionOptions extends RunOptions {
  /** Default `reset`. */
  readonly errorPolicy?: ErrorPolicy | undefined
  /** Called synchronously for every event, in order. */
  readonly onEvent?: ((event: TransitionEvent) => void) | undefined
}

/** Everything a group transition reports as it goes, arc events included. */
export type TransitionEvent =
  | ArcEvent
  | { readonly _tag: "PlanReady"; readonly plan: Plan; readonly at: number }
  | {
      readonly _tag: "RollbackBegun"
      readonly cause: FailureCause
      readonly states: FinalStates
      readonly at: number
    }
  | { readonly _tag: "DeviceReset"; readonly device: string; readonly from: State | "UNKNOWN"; readonly at: number }
  | { readonly _tag: "DeviceQuarantined"; readonly device: string; readonly at: number }
  | { readonly _tag: "RollbackDone"; readonly states: FinalStates; readonly ok: boolean; readonly at: number }

/** A completed group transition. */
export interface TransitionReport {
  readonly plan: Plan
  readonly from: Readonly<Record<string, State>>
  readonly to: Readonly<Record<string, State>>
  readonly startedAt: number
  readonly finishedAt: number
}

/** Builds the runnable graph of a plan: arcs, then barriers, dependencies as indices. */
export const graphOf = (plan: Plan): ReadonlyArray<GraphNode> => {
  const index = new Map<string, number>([
    ...plan.arcs.map((a, i) => [a.id, i] as const),
    ...plan.barriers.map((b, i) => [b.id, plan.arcs.length + i] as const)
  ])
  const deps = (after: ReadonlyArray<string>) => after.map((id) => index.get(id) ?? -1).filter((i) => i >= 0)
  return [
    ...plan.arcs.map((a) => ({ id: a.id, device: a.device, arc: { from: a.from, to: a.to }, after: deps(a.after) })),
    ...plan.barriers.map((b) => ({ id: b.id, device: undefined, arc: undefined, after: deps(b.after) }))
  ]
}

/** Where each arc started was going, per device, in start order of the graph's nodes. */
const attemptedOf = (nodes: ReadonlyArray<GraphNode>, started: Uint8Array): Record<string, Array<State>> => {
  const attempted: Record<string, Array<State>> = emptyDeviceRecord()
  nodes.forEach((node, i) => {
    if (started[i] !== 1 || node.device === undefined || node.arc === undefined) return
    const states = deviceEntry(attempted, node.device)
    if (states === undefined) putDevice(attempted, node.device, [node.arc.to])
    else states.push(node.arc.to)
  })
  return attempted
}

/**
 * Moves the group to the plan a planner makes from the devices' current states, as one
 * transaction. Reads every device's state, plans (refusing before touching anything if that
 * fails), and runs the plan's arcs as their dependencies allow. On a failure, timeout or
 * interruption it stops issuing arcs, lets the arcs in flight settle, reads every device's real
 * state, applies the ERROR policy, and rolls the group back to where it started with a plan
 * that obeys the same invariant. The rollback itself cannot be interrupted.
 */
export const executePlanned = (
  runtime: GroupRuntime,
  planner: (group: Group, from: Readonly<Record<string, State>>) => Result.Result<Plan, PlanError>,
  options: TransitionOptions = {}
): Effect.Effect<TransitionReport, TransitionRefused | TransitionFailed> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const now = () => clock.currentTimeMillisUnsafe()
    const emit = options.onEvent ?? (() => {})
    const startedAt = now()
    const read = yield* reportedStates(runtime)
    const start = emptyDeviceRecord<State>()
    for (const [id, state] of Object.entries(read)) {
      if (state === "UNKNOWN") return yield* new TransitionRefused({ cause: new StateUnreadable({ device: id }) })
      putDevice(start, id, state)
    }
    const planned = planner(runtime.group, start)
    if (Result.isFailure(planned)) return yield* new TransitionRefused({ cause: planned.failure })
    const plan = planned.success
    emit({ _tag: "PlanReady", plan, at: now() })
    const nodes = graphOf(plan)
    // Which arcs were started: a device that cannot be read afterwards may be where one was going.
    const started = new Uint8Array(nodes.length)

    return yield* Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const forward = yield* Effect.exit(restore(runGraphMarking(nodes, runtime.devices, options, started)))
        const outcome = Exit.isSuccess(forward) ? Option.some(forward.value) : Option.none()
        const failure = Option.flatMap(outcome, (o) => o.failure)
        if (Option.isSome(outcome) && Option.isNone(failure)) {
          return { plan, from: start, to: plan.target, startedAt, finishedAt: now() } satisfies TransitionReport
        }
        const first = Option.getOrUndefined(failure)
        const failedNode = first === undefined ? undefined : nodes[first.node]
        const attempted = attemptedOf(nodes, started)
        const cause: FailureCause = first?.error ?? new TransitionInterrupted()
        // The rollback runs in a fiber of its own: if this one is being interrupted, the arcs it
        // forks would be interrupted with it, and the rollback must complete regardless.
        const rolling = yield* Effect.forkDetach(rollback(runtime, start, attempted, cause, failedNode, options))
        return yield* Fiber.join(rolling)
      })
    )
  }).pipe(Effect.withSpan("Lockstep.transition"))

/** The state outside the saving group with the same P2P class as a pre-copy state. */
const outsideSaving: Partial<Record<State, State>> = { PRE_COPY: "RUNNING", PRE_COPY_P2P: "RUNNING_P2P" }

/**
 * Where rollback takes a device: back to its starting state, or, when the kernel forbids the way
 * back (STOP_COPY cannot return to PRE_COPY or PRE_COPY_P2P), to the state of the same P2P class
 * outside the saving group: RUNNING for PRE_COPY, RUNNING_P2P for PRE_COPY_P2P. A source that was
 * in pre-copy must then start its migration over; a device that started quiesced stays
 * quiesced, so that a peer that started halted is never left with a running initiator.
 */
export const rollbackTarget = (flags: number, current: State, start: State): State =>
  current === "ERROR" || Result.isSuccess(path(current, start, flags)) ? start : (outsideSaving[start] ?? "RUNNING")

/** What the rollback does to each device before it plans the way back. */
interface Triage {
  /** Left in ERROR for diagnosis (the `quarantine` policy). */
  readonly quarantined: ReadonlyArray<string>
  readonly toReset: ReadonlySet<string>
  /** Targets of a quarantined device (or of an unreadable one that may initiate): reset rather than left halted. */
  readonly guarded: ReadonlySet<string>
  /** Caught in RESUMING without having started there: reset, then planned back like any other. */
  readonly outOfResuming: ReadonlySet<string>
}

const triage = (
  group: Group,
  start: Readonly<Record<string, State>>,
  states: FinalStates,
  policy: ErrorPolicy,
  mayInitiate: ReadonlyArray<string>
): Triage => {
  const quarantined: Array<string> = []
  const toReset = new Set<string>()
  for (const d of group.devices) {
    if (states[d.id] !== "ERROR") continue
    if (policy === "reset") toReset.add(d.id)
    else quarantined.push(d.id)
  }
  // A quarantined device, or an unreadable one that may initiate, may still write into its
  // targets: none of them may stay halted.
  const guarded = new Set<string>()
  for (const id of [...quarantined, ...mayInitiate]) {
    for (const target of group.topology.targetsOf(id)) {
      const startState = start[target]
      if (quarantined.includes(target) || startState === undefined || stateClass(startState) !== "halted") continue
      guarded.add(target)
      toReset.add(target)
    }
  }
  // RESUMING is left only by validating a complete stream (RESUMING → STOP) or by a reset: a
  // device caught in RESUMING that did not start there is reset (to RUNNING, bus mastering off),
  // then planned back to where it started like any other.
  const outOfResuming = new Set<string>()
  for (const d of group.devices) {
    if (states[d.id] === "RESUMING" && start[d.id] !== "RESUMING" && !quarantined.includes(d.id)) {
      toReset.add(d.id)
      outOfResuming.add(d.id)
    }
  }
  return { quarantined, toReset, guarded, outOfResuming }
}

/**
 * Resets `ids` concurrently. A reset that fails or times out is the rollback's failure (the
 * device is not where it must be): the failures are returned, in the order they happened.
 */
const resetAll = (
  devices: ReadonlyMap<string, Device>,
  ids: ReadonlySet<string>,
  states: FinalStates,
  options: TransitionOptions
): Effect.Effect<ReadonlyArray<FailureCause>> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const emit = options.onEvent ?? (() => {})
    const timeoutMs = options.arcTimeoutMs ?? 30_000
    const failures: Array<FailureCause> = []
    const resetDevice = (id: string) =>
      Effect.gen(function* () {
        const device = devices.get(id)
        if (device === undefined) return
        emit({ _tag: "DeviceReset", device: id, from: states[id] ?? "UNKNOWN", at: clock.currentTimeMillisUnsafe() })
        yield* device.reset.pipe(
          Effect.timeoutOrElse({
            duration: timeoutMs,
            orElse: () =>
              Effect.fail(
                DeviceError.resetFailed({ device: id, code: "ETIMEDOUT", reason: `no answer within ${timeoutMs} ms` })
              )
          }),
          Effect.catch((error) => Effect.sync(() => failures.push(error)))
        )
      })
    yield* Effect.forEach(ids, resetDevice, { concurrency: "unbounded", discard: true })
    return failures
  })

/** The quiesced state of the same saving group as an initiating one (RUNNING → RUNNING_P2P). */
const quiescedOf: Partial<Record<State, State>> = { RUNNING: "RUNNING_P2P", PRE_COPY: "PRE_COPY_P2P" }

/**
 * A device that cannot be read may be where it started or wherever an arc started on it was
 * going (the fabric cannot be asked either). Answers the unreadable devices that may initiate,
 * and those that may be halted.
 */
const unreadableDevices = (
  group: Group,
  start: Readonly<Record<string, State>>,
  attempted: Readonly<Record<string, ReadonlyArray<State>>>,
  states: FinalStates
) => {
  const unreadable = group.devices.map((d) => d.id).filter((id) => states[id] === "UNKNOWN")
  const mayBe = (id: string, kind: "initiating" | "halted") =>
    [deviceEntry(start, id), ...(deviceEntry(attempted, id) ?? [])].some(
      (s) => s !== undefined && stateClass(s) === kind
    )
  return {
    mayInitiate: unreadable.filter((id) => mayBe(id, "initiating")),
    mayBeHalted: unreadable.filter((id) => mayBe(id, "halted"))
  }
}

/**
 * Nothing may start writing into a device that may be halted and cannot be asked: its
 * initiators go no further back than the quiesced state of their saving group. Lowers `to`
 * in place and answers the devices so held.
 */
const holdInitiatorsOf = (
  group: Group,
  mayBeHalted: ReadonlyArray<string>,
  quarantined: ReadonlyArray<string>,
  to: Record<string, State>
): ReadonlyArray<string> => {
  const held: Array<string> = []
  for (const u of mayBeHalted) {
    for (const x of group.topology.initiatorsOf(u)) {
      const back = deviceEntry(to, x)
      const quiet = back === undefined ? undefined : quiescedOf[back]
      const device = group.devices.find((d) => d.id === x)
      if (quiet === undefined || device === undefined || quarantined.includes(x)) continue
      if (!supportsState(device.flags, quiet)) continue
      putDevice(to, x, quiet)
      if (!held.includes(x)) held.push(x)
    }
  }
  return held
}

const rollback = (
  runtime: GroupRuntime,
  start: Readonly<Record<string, State>>,
  attempted: Readonly<Record<string, ReadonlyArray<State>>>,
  cause: FailureCause,
  failedNode: GraphNode | undefined,
  options: TransitionOptions
): Effect.Effect<never, TransitionFailed> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const now = () => clock.currentTimeMillisUnsafe()
    const emit = options.onEvent ?? (() => {})
    const policy = options.errorPolicy ?? "reset"
    const { group, devices } = runtime
    // Never assume: read back what every device really is now.
    let states: FinalStates = yield* reportedStates(runtime)
    emit({ _tag: "RollbackBegun", cause, states, at: now() })

    const { mayInitiate, mayBeHalted } = unreadableDevices(group, start, attempted, states)
    const { quarantined, toReset, guarded, outOfResuming } = triage(group, start, states, policy, mayInitiate)
    for (const id of quarantined) emit({ _tag: "DeviceQuarantined", device: id, at: now() })
    const resetFailures = yield* resetAll(devices, toReset, states, options)
    if (toReset.size > 0) states = yield* reportedStates(runtime)

    const from = emptyDeviceRecord<State>()
    const to = emptyDeviceRecord<State>()
    for (const d of group.devices) {
      const current = states[d.id]
      if (current === undefined || current === "UNKNOWN") continue
      putDevice(from, d.id, current)
      const startState = start[d.id] ?? "RUNNING"
      // Devices reset for the ERROR policy stay where the reset put them (and a quarantined
      // device's targets must not go back to halted states); those reset only to leave RESUMING
      // go back to where they started.
      const stays = quarantined.includes(d.id) || (toReset.has(d.id) && !outOfResuming.has(d.id)) || guarded.has(d.id)
      putDevice(to, d.id, stays ? current : rollbackTarget(d.flags, current, startState))
    }
    const held = holdInitiatorsOf(group, mayBeHalted, quarantined, to)
    let rollbackCause: FailureCause | PlanError | undefined = resetFailures[0]
    const planned = planTransition(group, {
      from,
      to,
      allowUnsafeStart: true,
      busMasteringOff: [...toReset].filter((id) => states[id] === "RUNNING")
    })
    if (Result.isFailure(planned)) rollbackCause ??= planned.failure
    else {
      const back = yield* runGraph(graphOf(planned.success), devices, { ...options, onEvent: emit })
      rollbackCause ??= Option.getOrUndefined(back.failure)?.error
    }
    const finalStates = yield* reportedStates(runtime)
    const rolledBack =
      rollbackCause === undefined &&
      group.devices.every(
        // A device whose state cannot be read (unreachable) was not rolled back, whatever else happened.
        (d) =>
          quarantined.includes(d.id) ||
          (deviceEntry(to, d.id) !== undefined && finalStates[d.id] === deviceEntry(to, d.id))
      )
    emit({ _tag: "RollbackDone", states: finalStates, ok: rolledBack, at: now() })
    return yield* new TransitionFailed({
      cause,
      device: failedNode?.device,
      arc: failedNode?.arc,
      startStates: start,
      finalStates,
      rolledBack,
      quarantined,
      held,
      rollbackCause
    })
  })

/** Moves the group to `target` (one state for all, or per device) as one transaction; see `executePlanned`. */
export const transition = (
  runtime: GroupRuntime,
  target: StateAssignment,
  options: TransitionOptions = {}
): Effect.Effect<TransitionReport, TransitionRefused | TransitionFailed> =>
  executePlanned(runtime, (group, from) => planTransition(group, { from, to: target }), options)
