import { Clock, Effect, Fiber } from "effect"
import { SimulationClock } from "./SimulationClock.js"

/** A clock that can be moved forward: the simulation's, or the test clock of `it.effect`. */
interface AdjustableClock {
  readonly adjust: (ms: number) => Effect.Effect<void>
}

const isAdjustable = (clock: Clock.Clock): clock is Clock.Clock & AdjustableClock =>
  "adjust" in clock && typeof clock.adjust === "function"

/**
 * What moves virtual time: the `SimulationClock` when one is provided (`lockstep simulate`,
 * benchmarks), else the current `Clock` if it can be moved (a test's `TestClock`).
 */
const timeMover: Effect.Effect<AdjustableClock> = Effect.gen(function* () {
  const simulation = yield* Effect.serviceOption(SimulationClock)
  if (simulation._tag === "Some") return simulation.value
  const clock = yield* Clock.Clock
  if (isAdjustable(clock)) return clock
  return yield* Effect.die(
    new Error("runOnVirtualTime needs virtual time: provide SimulationClock.layer (or run under a TestClock)")
  )
})

/**
 * Runs `effect` on virtual time, moving it forward `stepMs` at a time until it is done, so the
 * clock ends (to within a step) where the effect ended. Dies past `limitMs` of virtual time: a
 * hang in a simulation is a failure, never a stuck test. Needs `SimulationClock.layer` (or, in
 * tests, the `TestClock` of `it.effect`).
 *
 * Interrupted, it interrupts `effect` and keeps moving time until `effect` has finished: an
 * effect's finalizers (a migration's rollback) wait on virtual time too, and nothing else moves it.
 */
export const runOnVirtualTime = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly stepMs?: number; readonly limitMs?: number } = {}
): Effect.Effect<A, E, R> =>
  Effect.gen(function* () {
    const step = options.stepMs ?? 1
    const limit = options.limitMs ?? 600_000
    const clock = yield* timeMover
    const fiber = yield* Effect.forkChild(effect)
    /** Moves time until the fiber is done; answers whether it is. */
    const drive = Effect.gen(function* () {
      for (let t = 0; fiber.pollUnsafe() === undefined; t += step) {
        if (t >= limit) return false
        yield* clock.adjust(step)
      }
      return true
    })
    yield* Effect.yieldNow
    const done = yield* drive.pipe(
      Effect.onInterrupt(() =>
        Effect.andThen(
          Effect.sync(() => fiber.interruptUnsafe()),
          drive
        )
      )
    )
    if (!done) return yield* Effect.die(new Error(`still running after ${limit} ms of virtual time`))
    return yield* Fiber.join(fiber)
  })
