import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as NicBudget from "../src/NicBudget.js"

const out = (host: string, bytesPerSecond: number): NicBudget.Link => ({ host, direction: "out", bytesPerSecond })
const into = (host: string, bytesPerSecond: number): NicBudget.Link => ({ host, direction: "in", bytesPerSecond })

describe("the NIC budget", () => {
  it.effect("the flow with the better priority streams at the link's full rate; the other takes what is left", () =>
    Effect.gen(function* () {
      const budget = yield* NicBudget.make
      const finished: Record<string, number> = {}
      const flow = (name: string, priority: number) =>
        Effect.andThen(
          Effect.forEach(Array.from({ length: 5 }), () => budget.take([out("a", 1_000_000)], 100_000, priority), {
            discard: true
          }),
          Effect.flatMap(Clock.currentTimeMillis, (t) =>
            Effect.sync(() => {
              finished[name] = t
            })
          )
        )
      const both = yield* Effect.forkChild(Effect.all([flow("second", 1), flow("first", 0)], { concurrency: 2 }))
      yield* TestClock.adjust(1_000)
      yield* Fiber.join(both)
      // second asks first and gets the idle link at 0 (nobody else waits); from then on first wins
      // every grant: 0.1, 0.2, 0.3, 0.4, 0.5 s; second's other four follow at 0.6 to 0.9 s.
      expect(finished).toEqual({ first: 500, second: 900 })
    })
  )

  it.effect("a small write goes at once, and its bytes still count against the link", () =>
    Effect.gen(function* () {
      const budget = yield* NicBudget.make
      const bulk = yield* Effect.forkChild(budget.take([out("a", 1_000_000)], 500_000))
      yield* Fiber.join(bulk)
      // The link is reserved until 0.5 s, yet a 1 kB control message of another flow goes now…
      yield* budget.take([out("a", 1_000_000)], 1_000, 9)
      expect(yield* Clock.currentTimeMillis).toBe(0)
      // …and the next bulk write waits for both: 0.5 s + 1 ms.
      const next = yield* Effect.forkChild(budget.take([out("a", 1_000_000)], 100_000))
      yield* TestClock.adjust(500)
      expect(next.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      yield* Fiber.join(next)
      expect(yield* Clock.currentTimeMillis).toBe(501)
    })
  )

  it.effect("flows sharing a link get its bandwidth between them, never more", () =>
    Effect.gen(function* () {
      const budget = yield* NicBudget.make
      const chunk = 100_000
      const flow = (to: string) =>
        Effect.forEach(
          Array.from({ length: 10 }),
          () => budget.take([out("a", 1_000_000), into(to, 1_000_000)], chunk),
          {
            discard: true
          }
        )
      const both = yield* Effect.forkChild(Effect.all([flow("b"), flow("c")], { concurrency: 2 }))
      // 2 × 10 × 100 kB through a's 1 MB/s out: the last reservation starts at 1.9 s.
      yield* TestClock.adjust(1_899)
      expect(both.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust(1)
      yield* Fiber.join(both)
      expect(yield* Clock.currentTimeMillis).toBe(1_900)
    })
  )

  it.effect("a flow alone gets the whole link, and idle time earns no burst", () =>
    Effect.gen(function* () {
      const budget = yield* NicBudget.make
      yield* TestClock.adjust(10_000)
      const start = yield* Clock.currentTimeMillis
      const flow = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 5 }), () => budget.take([out("a", 500_000)], 100_000), { discard: true })
      )
      // The first 100 kB go at once; each next one waits for the link: 4 × 0.2 s.
      yield* TestClock.adjust(800)
      yield* Fiber.join(flow)
      expect((yield* Clock.currentTimeMillis) - start).toBe(800)
    })
  )

  it.effect("the slower of the two links a stream crosses sets its pace", () =>
    Effect.gen(function* () {
      const budget = yield* NicBudget.make
      const flow = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 3 }),
          () => budget.take([out("a", 1_000_000), into("b", 250_000)], 50_000),
          {
            discard: true
          }
        )
      )
      yield* TestClock.adjust(400)
      yield* Fiber.join(flow)
      expect(yield* Clock.currentTimeMillis).toBe(400)
    })
  )
})
