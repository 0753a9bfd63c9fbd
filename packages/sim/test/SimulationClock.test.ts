import { describe, expect, it } from "@effect/vitest"
import { runOnVirtualTime, SimulationClock } from "@lockstep/sim"
import { Clock, Effect, Fiber } from "effect"

const now = Effect.clockWith((clock) => clock.currentTimeMillis)

/** `it.live`: real scheduling and real time, so only the simulation's own clock is virtual. */
describe("SimulationClock", () => {
  it.live("stands still until moved, then wakes sleeps in end order, equal ends in the order they began", () =>
    Effect.gen(function* () {
      const { adjust } = yield* SimulationClock
      const woken: Array<readonly [string, number]> = []
      const sleeper = (name: string, ms: number) =>
        Effect.sleep(ms).pipe(
          Effect.andThen(now),
          Effect.flatMap((at) => Effect.sync(() => woken.push([name, at])))
        )
      const fibers = yield* Effect.forEach(
        [
          ["c", 30],
          ["a", 10],
          ["b", 30],
          ["d", 40]
        ] as const,
        ([name, ms]) => Effect.forkChild(sleeper(name, ms))
      )
      yield* Effect.yieldNow
      expect(yield* now).toBe(0)
      expect(woken).toEqual([])
      yield* adjust(30)
      // Each sleep wakes at its own end, read on the clock when it runs.
      expect(woken).toEqual([
        ["a", 10],
        ["c", 30],
        ["b", 30]
      ])
      expect(yield* now).toBe(30)
      yield* adjust(10)
      expect(woken.at(-1)).toEqual(["d", 40])
      yield* Fiber.joinAll(fibers)
    }).pipe(Effect.provide(SimulationClock.layer))
  )

  it.live("runs a program on virtual time that ends where the program's last sleep ends", () =>
    Effect.gen(function* () {
      const program = Effect.gen(function* () {
        yield* Effect.sleep(250)
        yield* Effect.forEach([100, 400], (ms) => Effect.sleep(ms), { concurrency: "unbounded" })
        return yield* now
      })
      // 250 ms, then the longer of two concurrent sleeps: 400 ms.
      expect(yield* runOnVirtualTime(program)).toBe(650)
      const clock = yield* Clock.Clock
      expect(clock.currentTimeMillisUnsafe()).toBe(650)
    }).pipe(Effect.provide(SimulationClock.layer))
  )
})
