import type {
  ErrorPolicy,
  StateAssignment,
  TransitionEvent,
  TransitionFailed,
  TransitionRefused,
  TransitionReport
} from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import {
  type DeviceStatus,
  describeViolation,
  type InvariantViolation,
  type SimDevice,
  type SimEvent,
  type SimulatedGroup
} from "@lockstep/sim"
import { Cause, Effect, Exit, Result } from "effect"
import {
  expectedAfterFailure,
  hasResumeSession,
  hasSavingSession,
  judgeTransition,
  type ModelGroup,
  type Verdict as ModelVerdict,
  quarantinedBy
} from "../model/Model.js"

/**
 * The oracle every fuzzer shares: what a group transition must have done, judged from the
 * outside (the devices' real states, their event log, the fabric's violations) against the
 * reference model (`test/model`), never against the coordinator's planner, executor or topology,
 * and never from what the coordinator says about itself. It imports nothing of the coordinator
 * but type names.
 *
 * The contract it checks (DESIGN.md sections 2 and 5):
 * - the fabric saw no ordering violation, and none is left open after a clean end. Not ordering
 *   violations: exposures no ordering can prevent, where an initiator fails (or is interrupted)
 *   into ERROR while a target is halted, or while the target's arc into a halted state is already
 *   requested (the coordinator cannot take back a request; it must not make a new one once it has
 *   heard);
 * - success: exactly where the model says every device ends;
 * - `TransitionRefused`: exactly when the model finds no safe order (an over-cautious refusal is a
 *   failure too), with a cause of the model's kind, before any device event;
 * - `TransitionFailed`: only after a device failure, a timeout or an interruption, and only for a
 *   transition the model can order; it names the device and arc of its cause, its `finalStates`
 *   are the real states, its `RollbackBegun` event reports the real states (read back, not
 *   assumed), and when it says it rolled back every device is where the model puts it after a
 *   failure under the policy; a rollback gives up only after a device failed, or a reset or an
 *   arc timed out, during it;
 * - never more arcs in flight than the concurrency bound;
 * - nothing left behind: no arc in flight, and no data session open outside the states that have one.
 */

/**
 * A group as the oracle observes it: its devices' status and data sessions, every device event,
 * and the invariant's violations as a fabric records them. Simulated groups are observed through
 * their fabric; the exhaustive checker observes its own devices.
 */
export interface Observed {
  /** The devices, in group order. */
  readonly devices: ReadonlyMap<string, Pick<SimDevice, "status" | "read" | "write">>
  /** Calls `listener` on every device event, synchronously, until the returned function is called. */
  readonly observe: (listener: (event: SimEvent) => void) => () => void
  /** Every violation so far, in the order they began. */
  readonly violations: () => ReadonlyArray<InvariantViolation>
  /** Brings the record up to now (lands the P2P writes due). */
  readonly settle: Effect.Effect<void>
}

/** A simulated group, observed through its devices and its fabric. */
export const observeSim = (sim: SimulatedGroup): Observed => ({
  devices: sim.devices,
  observe: (listener) => {
    const stops = [...sim.devices.values()].map((d) => d.observe(listener))
    return () => {
      for (const stop of stops) stop()
    }
  },
  violations: sim.fabric.violations,
  settle: sim.fabric.settle
})

/** Everything observed of one transition attempt. */
export interface Attempt {
  readonly request: StateAssignment
  readonly policy: ErrorPolicy
  /** The bound on arcs in flight the transition was given, if any. */
  readonly concurrency: number | undefined
  /** The real states before the attempt. */
  readonly start: Readonly<Record<string, State>>
  /** Every device event during the attempt, in order. */
  readonly log: ReadonlyArray<SimEvent>
  /** The position of each `log` entry on the attempt's timeline (shared with `eventSeq`). */
  readonly logSeq: ReadonlyArray<number>
  /** The length of `log` when the coordinator began its rollback, if it did. */
  readonly rollbackAt: number | undefined
  readonly events: ReadonlyArray<TransitionEvent>
  /** The position of each `events` entry on the attempt's timeline. */
  readonly eventSeq: ReadonlyArray<number>
  readonly exit: Exit.Exit<TransitionReport, TransitionRefused | TransitionFailed>
  /** Whether the fuzzer interrupted the transition. */
  readonly interrupted: boolean
  /** The fabric's violations that began during the attempt, as they stand at its end. */
  readonly violations: ReadonlyArray<InvariantViolation>
  /** For each of `violations`, the position on the timeline of the device event that began it. */
  readonly violationSeq: ReadonlyArray<number>
}

/** How an attempt ended. */
export type Outcome = "succeeded" | "refused" | "failed" | "interrupted"

/** The oracle's judgement of one attempt. */
export interface Verdict {
  readonly outcome: Outcome
  /** Every broken rule, as a sentence; empty when the attempt kept the contract. */
  readonly problems: ReadonlyArray<string>
  /** The real states after the attempt. */
  readonly states: Readonly<Record<string, State>>
  /**
   * Where the model says every device is now, from the start, the request, the policy and the
   * device events up to the rollback (never from the states after it); `undefined` when the
   * rollback could not complete (a device failed during it), so the model cannot say.
   */
  readonly predicted: Readonly<Record<string, State>> | undefined
  /** Injected faults that fired: injected arc failures, and arcs cut short that nobody interrupted. */
  readonly faultsFired: number
}

/** Whether an event leaves its device in ERROR after a failure: the hardware's doing, not the schedule's. */
const intoError = (cause: { readonly event: string }, initiator: { readonly state: State }): boolean =>
  (cause.event === "ArcFailed" || cause.event === "ArcInterrupted") && initiator.state === "ERROR"

/** A violation the coordinator could have prevented (see the module comment). */
export const isOrderingViolation = (v: InvariantViolation): boolean => !intoError(v.cause, v.initiator)

const statesText = (states: Readonly<Record<string, string>>): string =>
  Object.entries(states)
    .map(([id, s]) => `${id}=${s}`)
    .join(" ")

const differences = (
  expected: Readonly<Record<string, string>>,
  actual: Readonly<Record<string, string>>
): ReadonlyArray<string> =>
  Object.keys({ ...expected, ...actual })
    .filter((id) => expected[id] !== actual[id])
    .map((id) => `${id}: expected ${expected[id] ?? "nothing"}, is ${actual[id] ?? "nothing"}`)

/** The states the log says the devices were in after its first `upTo` events. */
export const statesAfter = (
  start: Readonly<Record<string, State>>,
  log: ReadonlyArray<SimEvent>,
  upTo: number
): Record<string, State> => {
  const states: Record<string, State> = { ...start }
  for (const e of log.slice(0, upTo)) states[e.device] = e.state
  return states
}

const isFault = (e: SimEvent): boolean => e._tag === "ArcFailed" || e._tag === "ArcInterrupted"

const isTimeout = (e: TransitionEvent): boolean =>
  e._tag === "ArcFailed" && (e.error as { readonly _tag: string })._tag === "ArcTimedOut"

/** Whether an arc timed out before (`"forward"`) or after (`"rollback"`) the rollback began. */
const timedOut = (a: Attempt, phase: "forward" | "rollback"): boolean => {
  const begun = a.events.findIndex((e) => e._tag === "RollbackBegun")
  const events =
    phase === "forward" ? a.events.slice(0, begun < 0 ? undefined : begun) : begun < 0 ? [] : a.events.slice(begun)
  return events.some(isTimeout)
}

/**
 * Whether a violation with an initiator in ERROR began when a target's arc into a halted state,
 * already requested by the coordinator when the initiator failed into ERROR, reached the device:
 * an arc cannot be taken back once requested, so this exposure is no more preventable than the
 * one the fabric attributes to the failure itself.
 */
const requestedBeforeFailure = (a: Attempt, v: InvariantViolation, at: number): boolean => {
  if (v.initiator.state !== "ERROR" || v.cause.event !== "ArcStarted" || v.cause.device !== v.edge.target) return false
  let failedAt = -1
  a.log.forEach((e, i) => {
    const seq = a.logSeq[i] ?? 0
    if (e.device === v.edge.initiator && isFault(e) && e.state === "ERROR" && seq < at) failedAt = seq
  })
  let requestedAt = -1
  a.events.forEach((e, i) => {
    const seq = a.eventSeq[i] ?? 0
    if (e._tag === "ArcStarted" && e.device === v.edge.target && seq < at) requestedAt = seq
  })
  return failedAt >= 0 && requestedAt >= 0 && requestedAt < failedAt
}

/** Every problem the device log and the fabric show, whatever the outcome. */
const fabricProblems = (a: Attempt, clean: boolean): Array<string> => {
  const problems: Array<string> = []
  a.violations.forEach((v, i) => {
    if (isOrderingViolation(v) && !requestedBeforeFailure(a, v, a.violationSeq[i] ?? 0))
      problems.push(`ordering violation: ${describeViolation(v)}`)
  })
  if (clean)
    for (const v of a.violations.filter((v) => v.endedAt === undefined))
      problems.push(`exposure left open after a clean end: ${describeViolation(v)}`)
  return problems
}

/** The most arcs the device log shows in flight at once. */
const mostInFlight = (log: ReadonlyArray<SimEvent>): number => {
  let now = 0
  let most = 0
  for (const e of log) {
    if (e._tag === "ArcStarted") now++
    else if (e._tag === "ArcCompleted" || e._tag === "ArcFailed" || e._tag === "ArcInterrupted") now--
    else if (e._tag === "Reset" && e.abortedArc !== undefined) now--
    most = Math.max(most, now)
  }
  return most
}

/** Probes every device: no arc in flight, no data session outside the states that have one. */
export const leftovers = (observed: Pick<Observed, "devices">): Effect.Effect<Array<string>> =>
  Effect.gen(function* () {
    const problems: Array<string> = []
    for (const [id, device] of observed.devices) {
      const status = yield* device.status
      if (status.inFlight !== undefined)
        problems.push(`${id}: arc ${status.inFlight.from} → ${status.inFlight.to} still in flight`)
      if (!hasSavingSession(status.state)) {
        const read = yield* Effect.result(device.read(1))
        if (Result.isSuccess(read) || read.failure.reason._tag !== "SessionFailed")
          problems.push(`${id}: a read in ${status.state} was not refused: a saving session was left open`)
      }
      if (!hasResumeSession(status.state)) {
        const write = yield* Effect.result(device.write(new Uint8Array(1)))
        if (Result.isSuccess(write) || write.failure.reason._tag !== "SessionFailed")
          problems.push(`${id}: a write in ${status.state} was not refused: a resume session was left open`)
      }
    }
    return problems
  })

/** What the rollback was: where the devices were when it began, and where the model puts them after it. */
const rollbackOf = (model: ModelGroup, a: Attempt) => {
  const at = a.rollbackAt ?? a.log.length
  const atRollback = statesAfter(a.start, a.log, at)
  return { at, atRollback, expected: expectedAfterFailure(model.devices, model.edges, a.start, atRollback, a.policy) }
}

/** Checks a rollback's end: where the devices are against where the model says. */
const rollbackProblems = (
  model: ModelGroup,
  a: Attempt,
  states: Readonly<Record<string, State>>,
  rolledBack: boolean,
  claimedQuarantine: ReadonlyArray<string> | undefined,
  rollbackCause: { readonly message: string } | undefined
): Array<string> => {
  const problems: Array<string> = []
  const { at, atRollback, expected } = rollbackOf(model, a)
  const begun = a.events.find((e) => e._tag === "RollbackBegun")
  if (begun !== undefined) {
    const claimed = differences(atRollback, begun.states)
    if (claimed.length > 0) problems.push(`the rollback began from states it did not read back: ${claimed.join("; ")}`)
  }
  const resets = new Set(a.log.slice(at).flatMap((e) => (e._tag === "Reset" ? [e.device] : [])))
  const resetLost = a.events.some((e) => e._tag === "DeviceReset" && !resets.has(e.device))
  const rollbackFault = a.log.slice(at).some(isFault) || timedOut(a, "rollback") || resetLost
  if (rolledBack) {
    const wrong = differences(expected, states)
    if (wrong.length > 0) problems.push(`said it rolled back, but ${wrong.join("; ")}`)
  } else if (!rollbackFault) {
    problems.push(
      `the rollback did not complete, yet no device failed during it (${rollbackCause?.message ?? "no cause given"}); devices at ${statesText(states)}`
    )
  }
  if (claimedQuarantine !== undefined) {
    const quarantine = quarantinedBy(model.devices, atRollback, a.policy)
    if (quarantine.join() !== claimedQuarantine.join())
      problems.push(`quarantined ${claimedQuarantine.join(",") || "none"}, expected ${quarantine.join(",") || "none"}`)
  }
  return problems
}

/** What a refusal names as its cause: the planner's reason, or the unreadable state. */
const refusalTag = (refusal: TransitionRefused): string =>
  refusal.cause._tag === "PlanError" ? refusal.cause.reason._tag : refusal.cause._tag

/** The `_tag`s of the refusal causes a model verdict allows. */
const refusalTags = (why: Extract<ModelVerdict, { possible: false }>["why"]): ReadonlyArray<string> =>
  why._tag === "KernelRefuses" ? ["PathRefused"] : ["UnsafeEdge", "DependencyCycle"]

const isRefused = (e: unknown): e is TransitionRefused =>
  (e as { readonly _tag?: unknown } | undefined)?._tag === "TransitionRefused"
const isFailed = (e: unknown): e is TransitionFailed =>
  (e as { readonly _tag?: unknown } | undefined)?._tag === "TransitionFailed"

/** Judges an attempt on the simulated group against the model of the same group. */
export const judge = (observed: Observed, model: ModelGroup, a: Attempt): Effect.Effect<Verdict> =>
  Effect.gen(function* () {
    const states = yield* realStates(observed)
    const problems: Array<string> = yield* leftovers(observed)
    const verdict = judgeTransition(model.devices, model.edges, a.start, a.request)
    const faultsFired = a.log.filter(
      (e) =>
        (e._tag === "ArcFailed" && e.reason === "injected arc failure") ||
        (e._tag === "ArcInterrupted" && !a.interrupted)
    ).length
    const forward = a.log.slice(0, a.rollbackAt ?? a.log.length)
    const forwardFault = forward.some(isFault) || a.interrupted || timedOut(a, "forward")
    if (a.concurrency !== undefined && mostInFlight(a.log) > a.concurrency)
      problems.push(`${mostInFlight(a.log)} arcs were in flight at once, over the bound of ${a.concurrency}`)
    const done = (outcome: Outcome, clean: boolean, predicted: Verdict["predicted"]): Verdict => ({
      outcome,
      problems: [...fabricProblems(a, clean), ...problems],
      states,
      predicted,
      faultsFired
    })

    if (Exit.isSuccess(a.exit)) {
      const report = a.exit.value
      if (!verdict.possible) problems.push(`succeeded where the model finds no safe order (${verdict.why._tag})`)
      else {
        const wrong = differences(verdict.target, states)
        if (wrong.length > 0) problems.push(`succeeded, but ${wrong.join("; ")}`)
        if (differences(verdict.target, report.to).length > 0) problems.push(`reported ${statesText(report.to)}`)
      }
      if (differences(a.start, report.from).length > 0) problems.push(`reported a start of ${statesText(report.from)}`)
      if (forward.some(isFault)) problems.push("succeeded although a device failed")
      return done("succeeded", true, verdict.possible ? verdict.target : states)
    }

    const error = Cause.findErrorOption(a.exit.cause)
    if (error._tag === "Some" && isRefused(error.value)) {
      const refusal = error.value
      if (a.log.length > 0) problems.push(`refused after ${a.log.length} device event(s)`)
      if (verdict.possible)
        problems.push(
          `refused a transition the model can order (${verdict.order.join(", ") || "nothing to move"}): ${refusal.message}`
        )
      else if (!refusalTags(verdict.why).includes(refusalTag(refusal)))
        problems.push(`refused with ${refusalTag(refusal)}, the model says ${verdict.why._tag}`)
      const moved = differences(a.start, states)
      if (moved.length > 0) problems.push(`refused, but ${moved.join("; ")}`)
      return done("refused", true, a.start)
    }

    if (error._tag === "Some" && isFailed(error.value)) {
      const failed = error.value
      if (!verdict.possible)
        problems.push(`failed where the model says it should have been refused (${verdict.why._tag})`)
      const real = differences(states, failed.finalStates)
      if (real.length > 0) problems.push(`finalStates are not the real states: ${real.join("; ")}`)
      if (differences(a.start, failed.startStates).length > 0)
        problems.push(`startStates are wrong: ${statesText(failed.startStates)}`)
      const cause = failed.cause
      if (cause._tag === "DeviceError" && cause.reason._tag === "ArcRejected")
        problems.push(`the coordinator asked for an illegal arc: ${cause.message}`)
      if (cause._tag === "TransitionInterrupted" && !a.interrupted) problems.push("interrupted, but nobody interrupted")
      if (
        "arc" in cause &&
        (failed.device !== cause.device || JSON.stringify(failed.arc) !== JSON.stringify(cause.arc))
      )
        problems.push(`names ${failed.device} ${JSON.stringify(failed.arc)}, its cause ${cause.message}`)
      if (!forwardFault) problems.push(`failed without a device failure, timeout or interruption: ${cause.message}`)
      problems.push(...rollbackProblems(model, a, states, failed.rolledBack, failed.quarantined, failed.rollbackCause))
      return done("failed", failed.rolledBack, failed.rolledBack ? rollbackOf(model, a).expected : undefined)
    }

    if (!a.interrupted || !Cause.hasInterruptsOnly(a.exit.cause)) {
      problems.push(`ended with neither a report nor a typed error: ${Cause.pretty(a.exit.cause)}`)
      return done("interrupted", false, undefined)
    }
    const rolledBackEvent = a.events.find((e) => e._tag === "RollbackDone")
    if (a.rollbackAt !== undefined) {
      const ok = rolledBackEvent?.ok === true
      problems.push(...rollbackProblems(model, a, states, ok, undefined, undefined))
      return done("interrupted", ok, ok ? rollbackOf(model, a).expected : undefined)
    }
    // Interrupted before it touched anything, or after it completed.
    const target = verdict.possible ? verdict.target : a.start
    const untouched = differences(a.start, states).length === 0
    if (!untouched && differences(target, states).length > 0)
      problems.push(`interrupted without a rollback, and left ${statesText(states)}`)
    return done("interrupted", true, untouched ? a.start : target)
  })

/** The real state of every device of an observed group. */
export const realStates = (observed: Pick<Observed, "devices">): Effect.Effect<Record<string, State>> =>
  Effect.map(
    Effect.forEach(observed.devices, ([id, device]) =>
      Effect.map(device.status, (s: DeviceStatus) => [id, s.state] as const)
    ),
    (rows) => Object.fromEntries(rows)
  )

/** One line per problem, with the attempt's request and start, for a property's failure message. */
export const describeProblems = (a: Attempt, v: Verdict): string =>
  [
    ...(process.env.FUZZ_DEBUG
      ? [
          ...a.events.filter((e) => e._tag !== "PlanReady").map((e) => JSON.stringify(e)),
          ...a.log.map((e) => JSON.stringify(e))
        ]
      : []),
    `transition to ${typeof a.request === "string" ? a.request : statesText(a.request)} from ${statesText(a.start)} (policy ${a.policy}${a.concurrency === undefined ? "" : `, at most ${a.concurrency} arcs at once`}${a.interrupted ? ", interrupted" : ""}): ${v.outcome}`,
    ...v.problems.map((p) => `  - ${p}`)
  ].join("\n")
