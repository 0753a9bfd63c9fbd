import { describe, expect, it } from "@effect/vitest"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

describe("runOnVirtualTime", () => {
  it.effect(
    "interrupted, it keeps virtual time moving until the effect's finalizers have run",
    () =>
      Effect.gen(function* () {
        const cleanedUpAt: Array<number> = []
        // A finalizer that takes virtual time, as a migration's rollback does.
        const work = Effect.never.pipe(
          Effect.onInterrupt(() =>
            Effect.sleep(50).pipe(
              Effect.andThen(Effect.clockWith((clock) => clock.currentTimeMillis)),
              Effect.flatMap((at) =>
                Effect.sync(() => {
                  cleanedUpAt.push(at)
                })
              )
            )
          )
        )
        const fiber = yield* Effect.forkChild(runOnVirtualTime(work))
        yield* TestClock.adjust(10)
        yield* Fiber.interrupt(fiber)
        expect(cleanedUpAt).toHaveLength(1)
        expect(cleanedUpAt[0]).toBeGreaterThanOrEqual(50)
      }),
    5_000
  )
})
