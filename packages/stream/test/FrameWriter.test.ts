import { describe, expect, it } from "@effect/vitest"
import {
  encodeFrame,
  FormatError,
  type Frame,
  FrameReader,
  FrameWriter,
  type ManifestDevice,
  MemoryTransport,
  type Transport,
  withTimeouts
} from "@lockstep/stream"
import { Effect, Fiber, Option, Ref, Result, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"

const devices: ReadonlyArray<ManifestDevice> = Array.from({ length: 8 }, (_, i) => ({
  id: `gpu${i}`,
  kind: "pci",
  flags: 7,
  compat: new TextEncoder().encode(`{"slot":${i}}`)
}))

/** Deterministic device state: byte `k` of device `d` is `(d * 31 + k) & 0xff`. */
const stateOf = (device: number, from: number, length: number) =>
  Uint8Array.from({ length }, (_, k) => (device * 31 + from + k) & 0xff)

const collect = (transport: Transport, options: FrameReader.FrameReaderOptions = {}) =>
  Stream.runCollect(FrameReader.frames(transport, options))

describe("FrameWriter and FrameReader", () => {
  it.effect("carry concurrent devices and control frames in both directions over a memory channel", () =>
    Effect.gen(function* () {
      const [source, destination] = yield* MemoryTransport.pair({ capacity: 4096 })
      const sizes = devices.map((_, i) => 1000 * i + 333)
      const send = Effect.gen(function* () {
        const writer = yield* FrameWriter.make(source, { chunkBytes: 700 })
        yield* writer.manifest(devices)
        yield* Effect.forEach(
          devices,
          (_, d) =>
            Effect.gen(function* () {
              for (let at = 0; at < (sizes[d] ?? 0); at += 500) {
                yield* writer.chunk(d, stateOf(d, at, Math.min(500, (sizes[d] ?? 0) - at)))
              }
              yield* writer.endDevice(d)
            }),
          { concurrency: "unbounded" }
        )
        return yield* writer.end
      })
      const manifest = { _tag: "Manifest", devices } as const
      const answer = Effect.gen(function* () {
        const writer = yield* FrameWriter.make(destination, { peerManifest: manifest })
        yield* writer.control("accept")
        yield* writer.control("switchover-ack", { device: 3 })
        yield* writer.control("commit", { payload: new TextEncoder().encode("ok") })
        return yield* writer.end
      })
      const [sent, received, , back] = yield* Effect.all(
        [send, collect(destination), answer, collect(source, { peerManifest: manifest })],
        { concurrency: "unbounded" }
      )
      expect(sent).toEqual({ _tag: "StreamEnd", bytes: sizes.reduce((a, b) => a + b, 0), chunks: expect.any(Number) })
      expect(received[0]?._tag).toBe("Manifest")
      expect(received.at(-1)).toEqual(sent)
      for (const [d, size] of sizes.entries()) {
        const parts = received.flatMap((f) => (f._tag === "Chunk" && f.device === d ? [f.payload] : []))
        expect(Buffer.concat(parts)).toEqual(Buffer.from(stateOf(d, 0, size)))
        expect(parts.every((p) => p.length <= 700)).toBe(true)
        expect(received).toContainEqual({ _tag: "DeviceEnd", device: d, bytes: size })
      }
      expect(back.map((f) => (f._tag === "Control" ? [f.kind, f.device] : f._tag))).toEqual([
        ["accept", undefined],
        ["switchover-ack", 3],
        ["commit", undefined],
        "StreamEnd"
      ])
    })
  )

  it.effect("round-trips random device data with random chunk sizes and channel capacities", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(
          fc.array(fc.uint8Array({ maxLength: 3000 }), { minLength: 1, maxLength: 4 }),
          fc.integer({ min: 1, max: 1500 }),
          fc.integer({ min: 1, max: 5000 }),
          (states, chunkBytes, capacity) =>
            Effect.runPromise(
              Effect.gen(function* () {
                const [a, b] = yield* MemoryTransport.pair({ capacity })
                const send = Effect.gen(function* () {
                  const writer = yield* FrameWriter.make(a, { chunkBytes })
                  yield* writer.manifest(devices.slice(0, states.length))
                  yield* Effect.forEach(
                    states,
                    (state, d) => Effect.andThen(writer.chunk(d, state), writer.endDevice(d)),
                    {
                      concurrency: "unbounded"
                    }
                  )
                  yield* writer.end
                })
                const [, frames] = yield* Effect.all([send, collect(b)], { concurrency: "unbounded" })
                for (const [d, state] of states.entries()) {
                  const parts = frames.flatMap((f) => (f._tag === "Chunk" && f.device === d ? [f.payload] : []))
                  expect(Buffer.concat(parts)).toEqual(Buffer.from(state))
                }
              })
            )
        ),
        { numRuns: 60 }
      )
    )
  )

  it.effect("refuses what the reader would reject, writes nothing for it, and carries on", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 1 << 20 })
      const writer = yield* FrameWriter.make(a)
      const refused = (effect: Effect.Effect<unknown, { readonly _tag: string }>) =>
        Effect.map(Effect.flip(effect), (e) => (e instanceof FormatError ? e.reason._tag : e._tag))
      expect(yield* refused(writer.chunk(0, new Uint8Array(1)))).toBe("FrameOutOfOrder")
      expect(yield* refused(writer.endDevice(0))).toBe("FrameOutOfOrder")
      expect(yield* refused(writer.manifest([]))).toBe("MalformedFrame")
      expect(yield* refused(writer.manifest([devices[0], devices[0]].flatMap((d) => (d ? [d] : []))))).toBe(
        "MalformedFrame"
      )
      expect(yield* refused(writer.control("switchover-ack", { device: 0 }))).toBe("UnknownDevice")
      yield* writer.manifest(devices.slice(0, 2))
      expect(yield* refused(writer.manifest(devices.slice(0, 2)))).toBe("FrameOutOfOrder")
      expect(yield* refused(writer.chunk(2, new Uint8Array(1)))).toBe("UnknownDevice")
      expect(yield* refused(writer.chunk(-1, new Uint8Array(1)))).toBe("MalformedFrame")
      expect(yield* refused(writer.control("error", { payload: new Uint8Array(70_000) }))).toBe("MalformedFrame")
      yield* writer.chunk(0, new Uint8Array(10))
      expect(yield* writer.endDevice(0)).toBe(10)
      expect(yield* refused(writer.chunk(0, new Uint8Array(1)))).toBe("ChunkAfterDeviceEnd")
      expect(yield* refused(writer.endDevice(0))).toBe("DuplicateDeviceEnd")
      expect(yield* refused(writer.end)).toBe("DeviceNotEnded")
      yield* writer.endDevice(1)
      expect(yield* writer.end).toEqual({ _tag: "StreamEnd", bytes: 10, chunks: 1 })
      expect(yield* refused(writer.control("commit"))).toBe("FrameOutOfOrder")
      const frames = yield* collect(b)
      expect(frames.map((f) => f._tag)).toEqual(["Manifest", "Chunk", "DeviceEnd", "DeviceEnd", "StreamEnd"])
    })
  )

  it.effect("refuses a manifest larger than the maximum frame size", () =>
    Effect.gen(function* () {
      const [a] = yield* MemoryTransport.pair()
      const writer = yield* FrameWriter.make(a, { maxFrameBytes: 64 })
      const error = yield* Effect.flip(writer.manifest(devices))
      expect(error).toMatchObject({
        _tag: "FormatError",
        reason: { _tag: "FrameTooLarge", frameType: "Manifest", max: 64 }
      })
    })
  )

  it.effect("pull reader: frames one at a time, then None once the writer ended its direction", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      const writer = yield* FrameWriter.make(a)
      yield* writer.manifest(devices.slice(0, 1))
      yield* writer.chunk(0, new Uint8Array(5))
      yield* writer.endDevice(0)
      yield* writer.end
      const reader = yield* FrameReader.make(b)
      const tags: Array<string> = []
      for (;;) {
        const frame: Option.Option<Frame> = yield* reader.next
        if (Option.isNone(frame)) break
        tags.push(frame.value._tag)
      }
      expect(tags).toEqual(["Manifest", "Chunk", "DeviceEnd", "StreamEnd"])
      expect(yield* reader.next).toEqual(Option.none())
      expect(yield* reader.offset).toBe(yield* writer.offset)
    })
  )

  it.effect("reader: a writer that ends its direction early is a truncated stream", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      const writer = yield* FrameWriter.make(a)
      yield* writer.manifest(devices.slice(0, 1))
      yield* writer.chunk(0, new Uint8Array(5))
      yield* a.end
      const error = yield* Effect.flip(collect(b))
      expect(error).toMatchObject({ _tag: "FormatError", reason: { _tag: "Truncated", inside: "stream" } })
    })
  )

  it.effect("a peer that stalls mid-frame is a read timeout, not a hang", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      const writer = yield* FrameWriter.make(a)
      yield* writer.manifest(devices.slice(0, 1))
      const partial = encodeFrame({ _tag: "Chunk", device: 0, payload: new Uint8Array(100) })
      if (Result.isSuccess(partial)) yield* a.write([partial.success[0] ?? new Uint8Array(0)])
      const reader = yield* Effect.forkChild(Effect.flip(collect(withTimeouts(b, { read: "30 seconds" }))))
      yield* TestClock.adjust("31 seconds")
      expect(yield* Fiber.join(reader)).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportTimeout", operation: "read" }
      })
    })
  )

  it.effect("back-pressure: a reader that does not read holds the writer at the channel's capacity", () =>
    Effect.gen(function* () {
      const capacity = 16 * 1024
      const [a, b] = yield* MemoryTransport.pair({ capacity })
      const writer = yield* FrameWriter.make(a, { chunkBytes: 4096 })
      yield* writer.manifest(devices.slice(0, 1))
      const accepted = yield* Ref.make(0)
      const fiber = yield* Effect.forkChild(
        Effect.gen(function* () {
          for (let i = 0; i < 256; i++) {
            yield* writer.chunk(0, new Uint8Array(4096))
            yield* Ref.update(accepted, (n) => n + 4096)
          }
          yield* writer.endDevice(0)
          yield* writer.end
        })
      )
      yield* TestClock.adjust("10 seconds")
      const held = yield* Ref.get(accepted)
      expect(fiber.pollUnsafe()).toBeUndefined()
      expect(held).toBeGreaterThan(0)
      // The channel holds at most its capacity plus one write (one frame).
      expect(held).toBeLessThanOrEqual(capacity + 4096)
      const frames = yield* collect(b)
      yield* Fiber.join(fiber)
      expect(yield* Ref.get(accepted)).toBe(256 * 4096)
      expect(frames.at(-1)).toEqual({ _tag: "StreamEnd", bytes: 256 * 4096, chunks: 256 })
    })
  )

  it.effect("an interrupted write abandons only its wait: the frame went out whole", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 100 })
      const writer = yield* FrameWriter.make(a)
      yield* writer.manifest(devices.slice(0, 1))
      const fiber = yield* Effect.forkChild(writer.chunk(0, new Uint8Array(10_000).fill(5)))
      yield* TestClock.adjust("1 second")
      expect(fiber.pollUnsafe()).toBeUndefined()
      yield* Fiber.interrupt(fiber)
      yield* Effect.forkChild(
        Effect.gen(function* () {
          yield* writer.control("abort")
          yield* writer.endDevice(0)
          yield* writer.end
        })
      )
      const frames = yield* collect(b)
      expect(frames.map((f) => (f._tag === "Control" ? f.kind : f._tag))).toEqual([
        "Manifest",
        "Chunk",
        "abort",
        "DeviceEnd",
        "StreamEnd"
      ])
    })
  )
})
