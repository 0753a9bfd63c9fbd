import { crc32 } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { FrameReader, FrameWriter, type Manifest, TcpTransport, type Transport } from "@lockstep/stream"
import { Effect, Fiber, Option } from "effect"

const MiB = 1024 * 1024

/** `length` bytes of a xorshift stream from `seed`: the same for the same arguments, no pattern a slab could fake. */
const noise = (length: number, seed: number): Uint8Array => {
  const out = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

/** Writes `data` in pieces of `piece` bytes (a size that aligns with nothing), then ends. */
const writeAll = (transport: Transport, data: Uint8Array, piece: number) =>
  Effect.gen(function* () {
    for (let at = 0; at < data.length; at += piece) yield* transport.write([data.subarray(at, at + piece)])
    yield* transport.end
  })

/** A listener, the accepted end, and a dialled end that reads into recycled buffers (a ring of about `readAheadBytes`). */
const recycledPairOf = (readAheadBytes?: number) =>
  Effect.gen(function* () {
    const listener = yield* TcpTransport.listen()
    const [reader, writer] = yield* Effect.all(
      [
        TcpTransport.connect({
          host: listener.host,
          port: listener.port,
          recycledReads: true,
          ...(readAheadBytes === undefined ? {} : { readAheadBytes })
        }),
        listener.accept
      ],
      { concurrency: 2 }
    )
    return { reader, writer }
  })

const recycledPair = recycledPairOf()

describe("TcpTransport with recycled reads", () => {
  it.live("lends every byte in order from a few reused buffers; a plain connection does not lend", () =>
    Effect.gen(function* () {
      const { reader, writer } = yield* recycledPair
      expect(reader.lends).toBe(true)
      expect(writer.lends).toBeUndefined()
      const data = noise(24 * MiB + 12_345, 17)
      const sending = yield* Effect.forkChild(writeAll(writer, data, 100_003))
      let crc = 0
      let bytes = 0
      const buffers = new Set<ArrayBufferLike>()
      for (;;) {
        const read = yield* reader.read
        if (Option.isNone(read)) break
        // Used before the next read, as the contract says.
        crc = crc32(read.value, crc)
        bytes += read.value.length
        buffers.add(read.value.buffer)
      }
      yield* Fiber.join(sending)
      expect(bytes).toBe(data.length)
      expect(crc).toBe(crc32(data))
      // The default ring: four slabs of about a quarter of the 4 MiB read-ahead each.
      expect(buffers.size).toBeLessThanOrEqual(4)
    })
  )

  it.live("a lent read is overwritten once the reader has moved a ring's worth past it", () =>
    Effect.gen(function* () {
      const { reader, writer } = yield* recycledPair
      const data = noise(16 * MiB, 5)
      const sending = yield* Effect.forkChild(writeAll(writer, data, 65_537))
      const first = yield* reader.read
      if (Option.isNone(first)) return yield* Effect.die(new Error("no bytes"))
      const kept = first.value
      const original = new Uint8Array(kept)
      let bytes = kept.length
      for (;;) {
        const read = yield* reader.read
        if (Option.isNone(read)) break
        bytes += read.value.length
      }
      yield* Fiber.join(sending)
      expect(bytes).toBe(data.length)
      // 16 MiB went through a 4 MiB ring: the first read's memory now holds later bytes.
      expect(Buffer.from(kept).equals(Buffer.from(original))).toBe(false)
      expect(Buffer.from(original).equals(Buffer.from(data.subarray(0, original.length)))).toBe(true)
    })
  )

  it.live("a reader that pauses loses nothing: the socket waits while the ring is full", () =>
    Effect.gen(function* () {
      const { reader, writer } = yield* recycledPair
      const data = noise(12 * MiB, 99)
      const sending = yield* Effect.forkChild(writeAll(writer, data, 1_000_003))
      let crc = 0
      let bytes = 0
      let reads = 0
      for (;;) {
        const read = yield* reader.read
        if (Option.isNone(read)) break
        crc = crc32(read.value, crc)
        bytes += read.value.length
        // A pause after every read: long enough for the sender to fill the ring each time.
        reads += 1
        yield* Effect.sleep("10 millis")
      }
      yield* Fiber.join(sending)
      expect(bytes).toBe(data.length)
      expect(crc).toBe(crc32(data))
      // Reads of at most one slab (1 MiB) each: at least 12 of them, each followed by a pause.
      expect(reads).toBeGreaterThanOrEqual(12)
    })
  )

  it.live("FrameReader over recycled reads: frames spanning reads decode exactly, the manifest survives", () =>
    Effect.gen(function* () {
      // A ring of four 128 KiB slabs under frames of 900 KB: each frame spans the whole ring
      // over several reads, so the reader must move a partial frame out before each read.
      const { reader, writer } = yield* recycledPairOf(512 * 1024)
      const devices = Array.from({ length: 4 }, (_, d) => ({
        id: `gpu${d}`,
        kind: "pci" as const,
        flags: 7,
        compat: noise(16, 1000 + d)
      }))
      const payloads = devices.map((_, d) => noise(3 * MiB + 777 * d, 200 + d))
      const send = Effect.gen(function* () {
        const frames = yield* FrameWriter.make(writer, { chunkBytes: 900_000 })
        yield* frames.manifest(devices)
        yield* Effect.forEach(
          payloads,
          (payload, d) =>
            Effect.gen(function* () {
              for (let at = 0; at < payload.length; at += 300_001)
                yield* frames.chunk(d, payload.subarray(at, at + 300_001))
              yield* frames.control("commit", { device: d, payload: noise(40, 300 + d) })
              yield* frames.endDevice(d)
            }),
          { concurrency: "unbounded", discard: true }
        )
        yield* frames.end
      })
      const receive = Effect.gen(function* () {
        const frames = yield* FrameReader.make(reader)
        expect(frames.lends).toBe(true)
        const crcs = devices.map(() => 0)
        const lengths = devices.map(() => 0)
        const controls: Array<Uint8Array> = []
        let manifest: Manifest | undefined
        for (;;) {
          const next = yield* frames.next
          if (Option.isNone(next)) break
          const frame = next.value
          if (frame._tag === "Manifest") manifest = frame
          if (frame._tag === "Control") controls[frame.device ?? -1] = frame.payload
          if (frame._tag === "Chunk") {
            // A lent payload, used before the next frame.
            crcs[frame.device] = crc32(frame.payload, crcs[frame.device])
            lengths[frame.device] = (lengths[frame.device] ?? 0) + frame.payload.length
            // A slow consumer: the ring fills while the next frame is still partly decoded.
            yield* Effect.sleep("5 millis")
          }
        }
        return { lengths, crcs, controls, manifest }
      })
      // Together, so that a failure of either side fails the test instead of leaving the other waiting.
      const [, { lengths, crcs, controls, manifest }] = yield* Effect.all([send, receive], { concurrency: 2 })
      expect(lengths).toEqual(payloads.map((p) => p.length))
      expect(crcs).toEqual(payloads.map((p) => crc32(p)))
      // Kept to the end, after 12 MiB went through the ring: they were copied out.
      expect(manifest?.devices.map((d) => Buffer.from(d.compat).toString("hex"))).toEqual(
        devices.map((d) => Buffer.from(d.compat).toString("hex"))
      )
      expect(controls.map((c) => Buffer.from(c).toString("hex"))).toEqual(
        devices.map((_, d) => Buffer.from(noise(40, 300 + d)).toString("hex"))
      )
    })
  )
})
