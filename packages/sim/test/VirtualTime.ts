import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

/**
 * Runs `effect` on the test clock, moving virtual time forward 1 ms at a time until it is
 * done, so that the clock ends where the effect ended. Fails the test past `limitMs`.
 */
export const untilDone = <A, E>(effect: Effect.Effect<A, E>, limitMs = 100_000): Effect.Effect<A, E> =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(effect)
    yield* Effect.yieldNow
    for (let t = 0; fiber.pollUnsafe() === undefined; t++) {
      if (t >= limitMs) return yield* Effect.die(new Error(`still running after ${limitMs} ms of virtual time`))
      yield* TestClock.adjust(1)
    }
    return yield* Fiber.join(fiber)
  })

/** Lets `ms` of virtual time pass. */
export const elapse = (ms: number): Effect.Effect<void> => TestClock.adjust(ms)

/** The virtual time, in ms. */
export const now: Effect.Effect<number> = Effect.clockWith((clock) => clock.currentTimeMillis)
