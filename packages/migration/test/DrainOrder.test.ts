import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { throttle } from "../src/Bandwidth.js"
import { ReadyOrder } from "../src/DrainOrder.js"

/*
 * The drain's rule: devices drain in the order they reach STOP_COPY, at most `limit` at once,
 * and a slot is never left free while a ready device waits. Over one channel of bandwidth B, the
 * last byte then leaves at the single-channel optimum with release times: with r(d) the time
 * device d is ready and p(d) = bytes(d) / B, no schedule can finish before
 *   max over d of ( r(d) + Σ p(e) over devices e with r(e) ≥ r(d) )
 * (everything ready at or after r(d) still has to cross the channel after r(d)), and a schedule
 * that never idles the channel while a device waits reaches it.
 */

describe("ReadyOrder", () => {
  it("starts devices in the order they became ready, never more than the limit, never idling a slot", () => {
    const steps = fc.array(fc.oneof(fc.constant("finish" as const), fc.constant("ready" as const)), {
      maxLength: 60
    })
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), steps, (limit, script) => {
        const started: Array<number> = []
        const order = new ReadyOrder(limit, (d) => started.push(d))
        let readied = 0
        let finished = 0
        for (const step of script) {
          if (step === "ready") order.ready(readied++)
          else if (order.active > 0) {
            order.finished()
            finished++
          }
          // In ready order: the started devices are exactly the first ones made ready.
          expect(started).toEqual(Array.from({ length: started.length }, (_, i) => i))
          expect(order.active).toBe(started.length - finished)
          expect(order.active).toBeLessThanOrEqual(limit)
          // Work-conserving: a device waits only while every slot is taken.
          if (started.length < readied) expect(order.active).toBe(limit)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("a device ready later but first in group order does not hold the only slot", () => {
    const started: Array<number> = []
    const order = new ReadyOrder(1, (d) => started.push(d))
    order.ready(1)
    order.ready(0)
    expect(started).toEqual([1])
    order.finished()
    expect(started).toEqual([1, 0])
  })
})

interface Drained {
  readonly readyAt: number
  readonly bytes: number
}

/** Drains devices ready at their times through one throttled channel, in ready order; answers when the last byte left. */
const drainAll = (
  devices: ReadonlyArray<Drained>,
  limit: number,
  bytesPerSecond: number,
  chunkBytes: number
): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const pace = throttle(bytesPerSecond)
      const turn = devices.map(() => Deferred.makeUnsafe<void>())
      const order = new ReadyOrder(limit, (i) => {
        const d = turn[i]
        if (d !== undefined) Deferred.doneUnsafe(d, Effect.void)
      })
      let lastByte = 0
      const fibers = yield* Effect.forEach(devices, (device, i) =>
        Effect.forkChild(
          Effect.gen(function* () {
            yield* Effect.sleep(device.readyAt)
            order.ready(i)
            yield* Deferred.await(turn[i] ?? Deferred.makeUnsafe<void>())
            for (let sent = 0; sent < device.bytes; sent += chunkBytes) {
              yield* pace.pace(Math.min(chunkBytes, device.bytes - sent))
              lastByte = Math.max(lastByte, yield* Clock.currentTimeMillis)
            }
            order.finished()
          })
        )
      )
      yield* TestClock.adjust(1_000_000_000)
      yield* Fiber.joinAll(fibers)
      return lastByte
    }).pipe(Effect.provide(TestClock.layer()))
  )

/** The single-channel lower bound with release times (see the rule above). */
const optimum = (devices: ReadonlyArray<Drained>, bytesPerSecond: number): number =>
  Math.max(
    0,
    ...devices.map(
      (d) =>
        d.readyAt +
        devices.filter((e) => e.readyAt >= d.readyAt).reduce((ms, e) => ms + (e.bytes / bytesPerSecond) * 1000, 0)
    )
  )

describe("the drain in ready order over one channel", () => {
  it.effect("finishes at the single-channel optimum whatever the limit and the group order", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ readyAt: fc.nat({ max: 40 }), bytes: fc.integer({ min: 1, max: 400_000 }) }), {
            minLength: 1,
            maxLength: 6
          }),
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 10_000_000, max: 1_000_000_000 }),
          fc.integer({ min: 4096, max: 512 * 1024 }),
          async (devices, limit, bytesPerSecond, chunkBytes) => {
            const finished = await drainAll(devices, limit, bytesPerSecond, chunkBytes)
            const best = optimum(devices, bytesPerSecond)
            // To the clock's resolution (1 ns): not before the optimum (the channel's rule), not after it.
            expect(finished).toBeGreaterThanOrEqual(best - 1e-6)
            expect(finished).toBeLessThanOrEqual(best + 2e-6)
          }
        ),
        { numRuns: 60 }
      )
    )
  )

  it.effect("with one slot, a device first in group order but ready last waits its turn", () =>
    Effect.promise(async () => {
      // gpu0 is ready at 10 ms with 1 ms of data, gpu1 at 0 ms with 10 ms: 0–10 gpu1, 10–11 gpu0.
      // Group order (gpu0 first) would idle until 10 ms and end at 21 ms.
      const devices = [
        { readyAt: 10, bytes: 1_000_000 },
        { readyAt: 0, bytes: 10_000_000 }
      ]
      expect(await drainAll(devices, 1, 1_000_000_000, 65536)).toBeCloseTo(11, 5)
      expect(optimum(devices, 1_000_000_000)).toBe(11)
    })
  )
})
