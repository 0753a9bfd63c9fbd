import {
  type ErrorPolicy,
  type Group,
  type GroupRuntime,
  type Plan,
  type PlanError,
  planTransition,
  rollbackTarget,
  type StateAssignment,
  type TransitionEvent,
  TransitionFailed,
  type TransitionOptions,
  TransitionRefused,
  type TransitionReport,
  transition
} from "@lockstep/coordinator"
import { isSaving, type State, stateClass } from "@lockstep/fsm"
import {
  describeViolation,
  type InvariantViolation,
  runOnVirtualTime,
  type SimEvent,
  type SimulatedGroup
} from "@lockstep/sim"
import { Cause, Effect, Exit, Fiber, Result } from "effect"
import { TestClock } from "effect/testing"

/**
 * The oracle every fuzzer shares: what a group transition must have done, judged from the
 * outside (the devices' real states, their event log, the fabric's violations), never from
 * what the coordinator says about itself.
 *
 * The contract it checks (DESIGN.md sections 2 and 5):
 * - the fabric saw no ordering violation, and none is left open after a clean end. Not ordering
 *   violations: exposures no ordering can prevent, where an initiator fails into ERROR while a
 *   target is halted, or while the target's arc into a halted state is already requested (the
 *   coordinator cannot take back a request; it must not make a new one once it has heard);
 * - success: every device at its target;
 * - `TransitionRefused`: exactly when the planner refuses, and before any device event;
 * - `TransitionFailed`: only after a device failure, a timeout or an interruption; it names the
 *   device and arc of its cause, its `finalStates` are the real states, and when it says it
 *   rolled back, every device is back at its starting state (or RUNNING where `rollbackTarget`
 *   says so), except devices found in ERROR: reset to RUNNING under `reset`, left in ERROR
 *   under `quarantine` (their halted-start targets reset to RUNNING); the states its
 *   `RollbackBegun` event reports are the real ones (read back, not assumed); a rollback gives up
 *   only after a device failed, or a reset or an arc timed out, during it;
 * - no arc is left in flight and no data session is left open outside the saving and resuming
 *   states.
 */

/** Everything observed of one transition attempt. */
export interface Attempt {
  readonly request: StateAssignment
  readonly policy: ErrorPolicy
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
  /** Injected faults that fired: injected arc failures, and arcs cut short that nobody interrupted. */
  readonly faultsFired: number
}

/** A violation the coordinator could have prevented (see the module comment). */
export const isOrderingViolation = (v: InvariantViolation): boolean =>
  !(v.cause.event === "ArcFailed" && v.initiator.state === "ERROR")

/** What drives the transition: runs it (on whatever clock), perhaps interrupting it. */
export type Drive = (
  transition: Effect.Effect<TransitionReport, TransitionRefused | TransitionFailed>
) => Effect.Effect<{
  readonly exit: Exit.Exit<TransitionReport, TransitionRefused | TransitionFailed>
  readonly interrupted: boolean
}>

/**
 * Drives a transition on the test clock (virtual time, 1 ms steps), interrupting it once
 * `interruptAtMs` of virtual time have passed if it is still running then.
 */
export const virtualTimeDrive =
  (interruptAtMs: number | undefined): Drive =>
  (run) =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(run)
      yield* Effect.yieldNow
      let interrupted = false
      if (interruptAtMs !== undefined) {
        for (let ms = 0; ms < interruptAtMs && fiber.pollUnsafe() === undefined; ms++) yield* TestClock.adjust(1)
        if (fiber.pollUnsafe() === undefined) {
          interrupted = true
          const stopping = yield* Effect.forkChild(Fiber.interrupt(fiber))
          yield* runOnVirtualTime(Fiber.join(stopping), { limitMs: 60_000 })
        }
      }
      const exit = yield* runOnVirtualTime(Fiber.await(fiber), { limitMs: 60_000 })
      return { exit, interrupted }
    })

/** The real state of every device of a simulated group. */
export const realStates = (sim: SimulatedGroup): Effect.Effect<Record<string, State>> =>
  Effect.map(
    Effect.forEach(sim.group.devices, (d) => {
      const device = sim.devices.get(d.id)
      return device === undefined
        ? Effect.succeed([d.id, "ERROR" as State] as const)
        : Effect.map(device.status, (s) => [d.id, s.state] as const)
    }),
    (rows) => Object.fromEntries(rows)
  )

/**
 * Runs one transition of `sim` through `runtime` (the simulated devices, or decorators over
 * them) and records everything the oracle needs.
 */
export const attempt = (
  sim: SimulatedGroup,
  runtime: GroupRuntime,
  request: StateAssignment,
  options: TransitionOptions & { readonly errorPolicy: ErrorPolicy },
  drive: Drive
): Effect.Effect<Attempt> =>
  Effect.gen(function* () {
    const start = yield* realStates(sim)
    let seq = 0
    const log: Array<SimEvent> = []
    const logSeq: Array<number> = []
    const events: Array<TransitionEvent> = []
    const eventSeq: Array<number> = []
    const violationSeq: Array<number> = []
    let rollbackAt: number | undefined
    const before = sim.fabric.violations().length
    // The fabric records a violation before the observers hear of the event that began it.
    const stops = [...sim.devices.values()].map((d) =>
      d.observe((e) => {
        log.push(e)
        logSeq.push(seq)
        const opened = sim.fabric.violations().length - before
        while (violationSeq.length < opened) violationSeq.push(seq)
        seq++
      })
    )
    const { exit, interrupted } = yield* drive(
      transition(runtime, request, {
        ...options,
        onEvent: (e) => {
          events.push(e)
          eventSeq.push(seq++)
          if (e._tag === "RollbackBegun") rollbackAt = log.length
        }
      })
    ).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          for (const stop of stops) stop()
        })
      )
    )
    yield* sim.fabric.settle
    return {
      request,
      policy: options.errorPolicy,
      start,
      log,
      logSeq,
      rollbackAt,
      events,
      eventSeq,
      exit,
      interrupted,
      violations: sim.fabric.violations().slice(before),
      violationSeq
    }
  })

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
const statesAfter = (
  start: Readonly<Record<string, State>>,
  log: ReadonlyArray<SimEvent>,
  upTo: number
): Record<string, State> => {
  const states: Record<string, State> = { ...start }
  for (const e of log.slice(0, upTo)) states[e.device] = e.state
  return states
}

const isFault = (e: SimEvent): boolean => e._tag === "ArcFailed" || e._tag === "ArcInterrupted"

/** Whether an arc timed out before (`"forward"`) or after (`"rollback"`) the rollback began. */
const timedOut = (a: Attempt, phase: "forward" | "rollback"): boolean => {
  const begun = a.events.findIndex((e) => e._tag === "RollbackBegun")
  const events =
    phase === "forward" ? a.events.slice(0, begun < 0 ? undefined : begun) : begun < 0 ? [] : a.events.slice(begun)
  return events.some((e) => e._tag === "ArcFailed" && e.error._tag === "ArcTimedOut")
}

/**
 * Where the documented rollback leaves each device, from the states the devices were really in
 * when it began.
 */
export const expectedRollback = (
  group: Group,
  start: Readonly<Record<string, State>>,
  atRollback: Readonly<Record<string, State>>,
  policy: ErrorPolicy
): Record<string, State> => {
  const quarantined = policy === "quarantine" ? group.devices.filter((d) => atRollback[d.id] === "ERROR") : []
  return Object.fromEntries(
    group.devices.map((d) => {
      const begin = start[d.id] ?? "RUNNING"
      const current = atRollback[d.id] ?? "ERROR"
      if (quarantined.includes(d)) return [d.id, "ERROR"]
      const exposed = quarantined.some((q) => group.topology.hasEdge(q.id, d.id))
      if (exposed && stateClass(begin) === "halted") return [d.id, "RUNNING"]
      // The `reset` policy's documented outcome: a reset returns RUNNING, and there it stays.
      if (current === "ERROR") return [d.id, "RUNNING"]
      return [d.id, rollbackTarget(d.flags, current, begin)]
    })
  )
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
    if (e.device === v.edge.initiator && e._tag === "ArcFailed" && e.state === "ERROR" && seq < at) failedAt = seq
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

/** Probes every device: no arc in flight, no data session outside the states that have one. */
const leftovers = (sim: SimulatedGroup): Effect.Effect<Array<string>> =>
  Effect.gen(function* () {
    const problems: Array<string> = []
    for (const [id, device] of sim.devices) {
      const status = yield* device.status
      if (status.inFlight !== undefined)
        problems.push(`${id}: arc ${status.inFlight.from} → ${status.inFlight.to} still in flight`)
      if (!isSaving(status.state)) {
        const read = yield* Effect.result(device.read(1))
        if (Result.isSuccess(read) || read.failure._tag !== "SessionFailed")
          problems.push(`${id}: a read in ${status.state} was not refused: a saving session was left open`)
      }
      if (status.state !== "RESUMING") {
        const write = yield* Effect.result(device.write(new Uint8Array(1)))
        if (Result.isSuccess(write) || write.failure._tag !== "SessionFailed")
          problems.push(`${id}: a write in ${status.state} was not refused: a resume session was left open`)
      }
    }
    return problems
  })

/** Checks a rollback's end: where the devices are against where the contract says. */
const rollbackProblems = (
  sim: SimulatedGroup,
  a: Attempt,
  states: Readonly<Record<string, State>>,
  rolledBack: boolean,
  claimedQuarantine: ReadonlyArray<string> | undefined,
  rollbackCause: { readonly message: string } | undefined
): Array<string> => {
  const problems: Array<string> = []
  const at = a.rollbackAt ?? a.log.length
  const atRollback = statesAfter(a.start, a.log, at)
  const begun = a.events.find((e) => e._tag === "RollbackBegun")
  if (begun !== undefined) {
    const claimed = differences(atRollback, begun.states)
    if (claimed.length > 0) problems.push(`the rollback began from states it did not read back: ${claimed.join("; ")}`)
  }
  const expected = expectedRollback(sim.group, a.start, atRollback, a.policy)
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
    const quarantine = sim.group.devices
      .filter((d) => a.policy === "quarantine" && atRollback[d.id] === "ERROR")
      .map((d) => d.id)
    if (quarantine.join() !== claimedQuarantine.join())
      problems.push(`quarantined ${claimedQuarantine.join(",") || "none"}, expected ${quarantine.join(",") || "none"}`)
  }
  return problems
}

/** Judges an attempt against the contract. */
export const judge = (sim: SimulatedGroup, a: Attempt): Effect.Effect<Verdict> =>
  Effect.gen(function* () {
    const states = yield* realStates(sim)
    const problems: Array<string> = yield* leftovers(sim)
    const planned: Result.Result<Plan, PlanError> = planTransition(sim.group, { from: a.start, to: a.request })
    const faultsFired = a.log.filter(
      (e) =>
        (e._tag === "ArcFailed" && e.reason === "injected arc failure") ||
        (e._tag === "ArcInterrupted" && !a.interrupted)
    ).length
    const forward = a.log.slice(0, a.rollbackAt ?? a.log.length)
    const forwardFault = forward.some(isFault) || a.interrupted || timedOut(a, "forward")
    const done = (outcome: Outcome, clean: boolean): Verdict => ({
      outcome,
      problems: [...fabricProblems(a, clean), ...problems],
      states,
      faultsFired
    })

    if (Exit.isSuccess(a.exit)) {
      const report = a.exit.value
      if (Result.isFailure(planned)) problems.push("succeeded where the planner refuses")
      else {
        const wrong = differences(planned.success.target, states)
        if (wrong.length > 0) problems.push(`succeeded, but ${wrong.join("; ")}`)
        if (differences(planned.success.target, report.to).length > 0)
          problems.push(`reported ${statesText(report.to)}`)
      }
      if (differences(a.start, report.from).length > 0) problems.push(`reported a start of ${statesText(report.from)}`)
      if (forward.some(isFault)) problems.push("succeeded although a device failed")
      return done("succeeded", true)
    }

    const error = Cause.findErrorOption(a.exit.cause)
    if (error._tag === "Some" && error.value instanceof TransitionRefused) {
      if (a.log.length > 0) problems.push(`refused after ${a.log.length} device event(s)`)
      if (Result.isSuccess(planned)) problems.push(`refused a plannable request: ${error.value.message}`)
      else if (error.value.cause._tag !== planned.failure._tag)
        problems.push(`refused with ${error.value.cause._tag}, the planner says ${planned.failure._tag}`)
      const moved = differences(a.start, states)
      if (moved.length > 0) problems.push(`refused, but ${moved.join("; ")}`)
      return done("refused", true)
    }

    if (error._tag === "Some" && error.value instanceof TransitionFailed) {
      const failed = error.value
      if (Result.isFailure(planned)) problems.push("failed where the planner refuses: it should have been refused")
      const real = differences(states, failed.finalStates)
      if (real.length > 0) problems.push(`finalStates are not the real states: ${real.join("; ")}`)
      if (differences(a.start, failed.startStates).length > 0)
        problems.push(`startStates are wrong: ${statesText(failed.startStates)}`)
      const cause = failed.cause
      if (cause._tag === "ArcRejected") problems.push(`the coordinator asked for an illegal arc: ${cause.message}`)
      if (cause._tag === "TransitionInterrupted" && !a.interrupted) problems.push("interrupted, but nobody interrupted")
      if (
        "arc" in cause &&
        (failed.device !== cause.device || JSON.stringify(failed.arc) !== JSON.stringify(cause.arc))
      )
        problems.push(`names ${failed.device} ${JSON.stringify(failed.arc)}, its cause ${cause.message}`)
      if (!forwardFault) problems.push(`failed without a device failure, timeout or interruption: ${cause.message}`)
      problems.push(...rollbackProblems(sim, a, states, failed.rolledBack, failed.quarantined, failed.rollbackCause))
      return done("failed", failed.rolledBack)
    }

    if (!a.interrupted || !Cause.hasInterruptsOnly(a.exit.cause)) {
      problems.push(`ended with neither a report nor a typed error: ${Cause.pretty(a.exit.cause)}`)
      return done("interrupted", false)
    }
    const rolledBackEvent = a.events.find((e) => e._tag === "RollbackDone")
    if (a.rollbackAt !== undefined) {
      problems.push(...rollbackProblems(sim, a, states, rolledBackEvent?.ok === true, undefined, undefined))
      return done("interrupted", rolledBackEvent?.ok === true)
    }
    // Interrupted before it touched anything, or after it completed.
    const target = Result.isSuccess(planned) ? planned.success.target : a.start
    if (differences(a.start, states).length > 0 && differences(target, states).length > 0)
      problems.push(`interrupted without a rollback, and left ${statesText(states)}`)
    return done("interrupted", true)
  })

/** One line per problem, with the attempt's request and start, for a property's failure message. */
export const describeProblems = (a: Attempt, v: Verdict): string =>
  [
    ...(process.env.FUZZ_DEBUG
      ? [
          ...a.events.filter((e) => e._tag !== "PlanReady").map((e) => JSON.stringify(e)),
          ...a.log.map((e) => JSON.stringify(e))
        ]
      : []),
    `transition to ${typeof a.request === "string" ? a.request : statesText(a.request)} from ${statesText(a.start)} (policy ${a.policy}${a.interrupted ? ", interrupted" : ""}): ${v.outcome}`,
    ...v.problems.map((p) => `  - ${p}`)
  ].join("\n")
