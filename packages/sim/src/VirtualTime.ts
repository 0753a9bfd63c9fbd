import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

/**
 * Runs `effect` under the test clock, moving virtual time forward `stepMs` at a time until it
 * is done, so the clock ends (to within a step) where the effect ended. Dies past `limitMs` of
 * virtual time: a hang in a simulation is a failure, never a stuck test. Needs `TestClock`
 * (as in `it.effect`).
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
    const fiber = yield* Effect.forkChild(effect)
    /** Moves time until the fiber is done; answers whether it is. */
    const drive = Effect.gen(function* () {
      for (let t = 0; fiber.pollUnsafe() === undefined; t += step) {
        if (t >= limit) return false
        yield* TestClock.adjust(step)
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
