import {
  enterStopCopy,
  type GroupRuntime,
  type TransitionEvent,
  type TransitionFailed,
  type TransitionOptions,
  type TransitionRefused,
  type TransitionReport
} from "@lockstep/coordinator"
import { Deferred, Effect, Exit, Fiber } from "effect"
import { ReadyOrder } from "./DrainOrder.js"

/** How the switchover and drain went. */
export interface Switched {
  readonly report: TransitionReport
  /** When the first switchover arc started (the start of the downtime). */
  readonly firstArcAt: number | undefined
}

/** What {@link switchoverAndDrain} needs. */
export interface SwitchoverSpec<E> {
  readonly runtime: GroupRuntime
  /** The transition's options, given the hook that must see its events. */
  readonly options: (hook: (event: TransitionEvent) => void) => TransitionOptions
  /** At most this many devices drain at once. */
  readonly limit: number | "unbounded"
  /**
   * Drains the device at manifest index `i`; `stopping()` turns true once anything failed, and
   * the drain should stop at its next chunk boundary.
   */
  readonly drain: (i: number, stopping: () => boolean) => Effect.Effect<void, E>
  /** Called once the switchover has completed and only drains remain. */
  readonly onSwitched?: (() => void) | undefined
}

/**
 * The switchover and the drain together: the group goes to STOP_COPY through the quiescent
 * states, and each device drains as soon as its arc into STOP_COPY completes, earliest-ready
 * first (see {@link ReadyOrder}). If the switchover fails, no further drain starts, those running
 * stop at their next chunk, and the switchover's failure is answered. If a drain fails, the
 * others stop at their next chunk, the switchover completes (the transaction decides its own
 * rollback), and the drain's failure is answered.
 */
export const switchoverAndDrain = <E>(
  spec: SwitchoverSpec<E>
): Effect.Effect<Switched, E | TransitionFailed | TransitionRefused> =>
  Effect.gen(function* () {
    const { runtime } = spec
    const ids = runtime.group.devices.map((d) => d.id)
    const indexOf = new Map(ids.map((id, i) => [id, i] as const))
    let stopping = false
    let firstArcAt: number | undefined
    const turn = ids.map(() => Deferred.makeUnsafe<boolean>())
    const decide = (i: number, go: boolean) => {
      const d = turn[i]
      if (d !== undefined) Deferred.doneUnsafe(d, Effect.succeed(go))
    }
    const released = new Set<number>()
    const order = new ReadyOrder(spec.limit === "unbounded" ? ids.length : spec.limit, (i) => decide(i, true))
    const ready = (i: number) => {
      if (i < 0 || released.has(i)) return
      released.add(i)
      order.ready(i)
    }
    const drainOne = (i: number) =>
      Effect.gen(function* () {
        const go = yield* Deferred.await(turn[i] ?? Deferred.makeUnsafe<boolean>())
        if (!go) return
        if (stopping) return order.finished()
        const drained = yield* Effect.exit(spec.drain(i, () => stopping))
        order.finished()
        if (Exit.isFailure(drained)) {
          stopping = true
          return yield* Effect.failCause(drained.cause)
        }
      })
    // Every drain runs to its end before the first failure is answered: none is cut mid-frame.
    const drains = yield* Effect.forkChild(
      Effect.gen(function* () {
        const exits = yield* Effect.forEach(ids, (_, i) => Effect.exit(drainOne(i)), { concurrency: "unbounded" })
        for (const exit of exits) if (Exit.isFailure(exit)) return yield* Effect.failCause(exit.cause)
      })
    )
    const switched = yield* Effect.exit(
      enterStopCopy(
        runtime,
        spec.options((event) => {
          if (event._tag === "ArcStarted") firstArcAt ??= event.at
          if (event._tag === "ArcDone" && event.arc.to === "STOP_COPY") ready(indexOf.get(event.device) ?? -1)
        })
      )
    )
    if (Exit.isFailure(switched)) {
      stopping = true
      for (let i = 0; i < ids.length; i++) decide(i, false)
      yield* Fiber.await(drains)
      return yield* Effect.failCause(switched.cause)
    }
    // Devices that needed no arc into STOP_COPY (already there) are ready now.
    for (let i = 0; i < ids.length; i++) ready(i)
    spec.onSwitched?.()
    yield* Fiber.join(drains)
    return { report: switched.value, firstArcAt }
  })
