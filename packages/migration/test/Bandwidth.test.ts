import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { throttle } from "../src/Bandwidth.js"

/*
 * The rule of a bandwidth limit, as a model of one channel: a chunk of b bytes occupies the
 * channel for b / bandwidth from the moment the channel is free (the arrival of the chunk before
 * it, or the chunk's own request if the channel was idle), and arrives only then. So, with the
 * chunks ordered by arrival, each arrives exactly max(its request, the previous arrival) +
 * b / bandwidth: never earlier (no byte crosses faster than the
 * limit, the last one of a drain included), and never later (the limit wastes no time).
 */

interface Chunk {
  readonly requestedAt: number
  readonly arrivedAt: number
  readonly bytes: number
}

/** One sender: chunks requested one after the other, each after an idle gap. */
const senderArb = fc.array(fc.record({ gapMs: fc.nat({ max: 50 }), bytes: fc.integer({ min: 1, max: 200_000 }) }), {
  minLength: 1,
  maxLength: 6
})

/** Runs the senders concurrently through one throttle on a fresh virtual clock; answers every chunk. */
const run = (
  bytesPerSecond: number,
  senders: ReadonlyArray<ReadonlyArray<{ readonly gapMs: number; readonly bytes: number }>>
): Promise<ReadonlyArray<Chunk>> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const pace = throttle(bytesPerSecond)
      const chunks: Array<Chunk> = []
      const fibers = yield* Effect.forEach(senders, (sender) =>
        Effect.forkChild(
          Effect.forEach(
            sender,
            ({ gapMs, bytes }) =>
              Effect.gen(function* () {
                yield* Effect.sleep(gapMs)
                const requestedAt = yield* Clock.currentTimeMillis
                yield* pace.pace(bytes)
                chunks.push({ requestedAt, arrivedAt: yield* Clock.currentTimeMillis, bytes })
              }),
            { discard: true }
          )
        )
      )
      // Far past anything the senders can need: every sleep wakes at its own deadline on the way.
      yield* TestClock.adjust(1_000_000_000)
      yield* Fiber.joinAll(fibers)
      return chunks
    }).pipe(Effect.provide(TestClock.layer()))
  )

describe("Bandwidth", () => {
  it.effect("a chunk arrives exactly when its bytes have crossed the channel since it became free", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1_000, max: 2_000_000_000 }),
          fc.array(senderArb, { minLength: 1, maxLength: 4 }),
          async (bytesPerSecond, senders) => {
            const chunks = [...(await run(bytesPerSecond, senders))].sort((a, b) => a.arrivedAt - b.arrivedAt)
            expect(chunks.length).toBe(senders.flat().length)
            let free = Number.NEGATIVE_INFINITY
            for (const c of chunks) {
              const floor = Math.max(c.requestedAt, free) + (c.bytes / bytesPerSecond) * 1000
              // To the clock's resolution (1 ns = 1e-6 ms): never before the floor, and not after it.
              expect(c.arrivedAt).toBeGreaterThanOrEqual(floor - 1e-6)
              expect(c.arrivedAt).toBeLessThanOrEqual(floor + 2e-6)
              free = c.arrivedAt
            }
          }
        ),
        { numRuns: 80 }
      )
    )
  )

  it.effect("one chunk as large as a whole device state still costs its transmission time", () =>
    Effect.promise(async () => {
      // The case that used to vanish: 8 MiB in one chunk at 100 MB/s is 83.9 ms on the channel.
      const [chunk] = await run(100_000_000, [[{ gapMs: 0, bytes: 8 * 1024 * 1024 }]])
      const crossingMs = ((8 * 1024 * 1024) / 100_000_000) * 1000
      expect(chunk?.arrivedAt).toBeGreaterThanOrEqual(crossingMs - 1e-6)
      expect(chunk?.arrivedAt).toBeLessThanOrEqual(crossingMs + 2e-6)
    })
  )

  it.effect("without a limit nothing waits", () =>
    Effect.promise(async () => {
      const chunks = await run(Number.POSITIVE_INFINITY, [[{ gapMs: 3, bytes: 1 << 30 }], [{ gapMs: 0, bytes: 5 }]])
      expect(chunks.map((c) => c.arrivedAt - c.requestedAt)).toEqual([0, 0])
    })
  )
})
