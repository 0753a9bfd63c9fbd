import { describe, expect, it } from "@effect/vitest"
import { MemoryTransport, withTimeouts } from "@lockstep/stream"
import { Effect, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"

const bytes = (...values: ReadonlyArray<number>) => new Uint8Array(values)

describe("MemoryTransport", () => {
  it.effect("delivers writes in order in both directions, then end of stream", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      yield* a.write([bytes(1, 2), bytes(3)])
      yield* b.write([bytes(9)])
      yield* a.end
      expect(yield* b.read).toEqual(Option.some(bytes(1, 2)))
      expect(yield* b.read).toEqual(Option.some(bytes(3)))
      expect(yield* b.read).toEqual(Option.none())
      expect(yield* a.read).toEqual(Option.some(bytes(9)))
      // Ending one direction leaves the other open.
      yield* b.write([bytes(8)])
      expect(yield* a.read).toEqual(Option.some(bytes(8)))
    })
  )

  it.effect("a write is handed over whole, then waits until the channel is back within its capacity", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 4 })
      const big = bytes(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
      const writer = yield* Effect.forkChild(a.write([big, bytes(11)]))
      yield* TestClock.adjust("1 minute")
      expect(writer.pollUnsafe()).toBeUndefined()
      const first = yield* b.read
      if (Option.isSome(first)) expect(first.value).toBe(big)
      // 1 byte left buffered: within capacity, so the write completes.
      yield* Fiber.join(writer)
      expect(yield* b.read).toEqual(Option.some(bytes(11)))
      // A small write into a channel within capacity completes at once.
      yield* a.write([bytes(1, 2, 3)])
      yield* a.write([bytes(4)])
      const blocked = yield* Effect.forkChild(a.write([bytes(5)]))
      yield* TestClock.adjust("1 minute")
      expect(blocked.pollUnsafe()).toBeUndefined()
      yield* b.read
      yield* Fiber.join(blocked)
    })
  )

  it.effect("close: the peer reads what was buffered, then a closed-by-peer error; both sides' writes fail", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      yield* a.write([bytes(1)])
      yield* a.close
      expect(yield* b.read).toEqual(Option.some(bytes(1)))
      expect(yield* Effect.flip(b.read)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "peer" }
      })
      expect(yield* Effect.flip(b.write([bytes(2)]))).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "peer" }
      })
      expect(yield* Effect.flip(a.read)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "local" }
      })
      expect(yield* Effect.flip(a.write([bytes(2)]))).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "local" }
      })
      yield* a.close
    })
  )

  it.effect("close wakes a writer blocked on a full channel, and a reader waiting for bytes", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 1 })
      const writer = yield* Effect.forkChild(Effect.flip(a.write([bytes(1, 2, 3)])))
      // (the write is handed over whole, then waits: the peer's close fails that wait)
      const reader = yield* Effect.forkChild(Effect.flip(a.read))
      yield* TestClock.adjust("1 second")
      yield* b.close
      expect(yield* Fiber.join(writer)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "peer" }
      })
      expect(yield* Fiber.join(reader)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "peer" }
      })
    })
  )

  it.effect("writes after end fail locally", () =>
    Effect.gen(function* () {
      const [a] = yield* MemoryTransport.pair()
      yield* a.end
      expect(yield* Effect.flip(a.write([bytes(1)]))).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "local" }
      })
      expect(yield* Effect.flip(a.end)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportClosed", by: "local" }
      })
    })
  )

  it.effect("withTimeouts: a read or a write that waits too long fails with TransportTimeout", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 1 })
      const timed = withTimeouts(a, { read: "2 seconds", write: "3 seconds" })
      const read = yield* Effect.forkChild(Effect.flip(timed.read))
      const write = yield* Effect.forkChild(Effect.flip(timed.write([bytes(1, 2)])))
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(read)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportTimeout", operation: "read", millis: 2000 }
      })
      expect(yield* Fiber.join(write)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportTimeout", operation: "write", millis: 3000 }
      })
      // A timed-out read leaves the channel usable.
      yield* b.write([bytes(7)])
      expect(yield* timed.read).toEqual(Option.some(bytes(7)))
    })
  )
})
