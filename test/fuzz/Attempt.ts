import {
  type ErrorPolicy,
  type GroupRuntime,
  type StateAssignment,
  type TransitionEvent,
  type TransitionFailed,
  type TransitionOptions,
  type TransitionRefused,
  type TransitionReport,
  transition
} from "@lockstep/coordinator"
import { runOnVirtualTime, type SimEvent } from "@lockstep/sim"
import { Effect, type Exit, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { type Attempt, type Observed, realStates } from "./Oracle.js"

/**
 * Running one group transition for the oracle: the coordinator's `transition` on simulated devices,
 * with everything observed recorded (the devices' events, the coordinator's events, the fabric's
 * violations) on one timeline. The judging is `Oracle.ts`'s, which imports nothing it judges.
 */

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

/** Options of one attempt: the transition's, with the policy made explicit. */
export type AttemptOptions = TransitionOptions & { readonly errorPolicy: ErrorPolicy }

/**
 * Runs one transition of the observed group through `runtime` (its devices, or decorators over
 * them) and records everything the oracle needs.
 */
export const attempt = (
  sim: Observed,
  runtime: GroupRuntime,
  request: StateAssignment,
  options: AttemptOptions,
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
    const before = sim.violations().length
    // The fabric records a violation before the observers hear of the event that began it.
    const stop = sim.observe((e) => {
      log.push(e)
      logSeq.push(seq)
      const opened = sim.violations().length - before
      while (violationSeq.length < opened) violationSeq.push(seq)
      seq++
    })
    const { exit, interrupted } = yield* drive(
      transition(runtime, request, {
        ...options,
        onEvent: (e) => {
          events.push(e)
          eventSeq.push(seq++)
          if (e._tag === "RollbackBegun") rollbackAt = log.length
          options.onEvent?.(e)
        }
      })
    ).pipe(Effect.ensuring(Effect.sync(stop)))
    yield* sim.settle
    return {
      request,
      policy: options.errorPolicy,
      concurrency: options.concurrency,
      start,
      log,
      logSeq,
      rollbackAt,
      events,
      eventSeq,
      exit,
      interrupted,
      violations: sim.violations().slice(before),
      violationSeq
    }
  })
