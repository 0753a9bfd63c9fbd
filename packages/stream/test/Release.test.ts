import { describe, expect, it } from "@effect/vitest"
import {
  BufferPool,
  type ByteSink,
  FormatError,
  FrameWriter,
  type ManifestDevice,
  MemoryTransport,
  TcpTransport
} from "@lockstep/stream"
import { Effect, Option, Result } from "effect"

const devices: ReadonlyArray<ManifestDevice> = [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array(0) }]

/** A sink that records each write's release without calling it. */
const holdingSink = () => {
  const releases: Array<(() => void) | undefined> = []
  const sink: ByteSink = {
    write: (_chunks, release) => Effect.sync(() => void releases.push(release)),
    end: Effect.void
  }
  return { sink, releases }
}

describe("release of written buffers (ByteSink.write's `release`)", () => {
  it.effect(
    "the frame writer hands a chunk's release to the sink with its frames, and releases at once what it sends nothing of",
    () =>
      Effect.gen(function* () {
        const { sink, releases } = holdingSink()
        const writer = yield* FrameWriter.make(sink, { chunkBytes: 100 })
        yield* writer.manifest(devices)
        let released = 0
        const release = () => {
          released++
        }
        // 250 bytes: three chunk frames in one write, released once, by the sink.
        yield* writer.chunk(0, new Uint8Array(250), release)
        expect(released).toBe(0)
        expect(releases.at(-1)).toBe(release)
        // Nothing to send: released at once.
        yield* writer.chunk(0, new Uint8Array(0), release)
        expect(released).toBe(1)
        // Refused by the format (no device 5 in the manifest): nothing was written, released at once.
        const writes = releases.length
        const refused = yield* Effect.result(writer.chunk(5, new Uint8Array(10), release))
        expect(Result.isFailure(refused) && refused.failure instanceof FormatError && refused.failure.reason._tag).toBe(
          "UnknownDevice"
        )
        expect(released).toBe(2)
        expect(releases.length).toBe(writes)
      })
  )

  it.effect("a memory channel copies what is to be released, so the writer may reuse it at once", () =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair({ capacity: 1024 })
      const buffer = Uint8Array.from([1, 2, 3, 4])
      let released = 0
      yield* a.write([buffer], () => {
        released++
      })
      expect(released).toBe(1)
      buffer.fill(9)
      const read = yield* b.read
      expect(Option.getOrThrow(read)).toEqual(Uint8Array.from([1, 2, 3, 4]))
    })
  )

  it.live("TCP: every write is released, in order, and the peer receives the bytes as they were written", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const listener = yield* TcpTransport.listen()
        const [client, server] = yield* Effect.all(
          [TcpTransport.connect({ host: listener.host, port: listener.port }), listener.accept],
          { concurrency: 2 }
        )
        const pool = new BufferPool(64 * 1024, 4)
        const writes = 64
        const order: Array<number> = []
        const send = Effect.gen(function* () {
          for (let i = 0; i < writes; i++) {
            const buffer = pool.take()
            buffer.fill(i)
            yield* client.write([buffer.subarray(0, 1000), buffer.subarray(1000)], () => {
              order.push(i)
              pool.give(buffer)
            })
          }
          yield* client.end
        })
        const receive = Effect.gen(function* () {
          const parts: Array<Uint8Array> = []
          for (;;) {
            const bytes = yield* server.read
            if (Option.isNone(bytes)) return Buffer.concat(parts)
            parts.push(bytes.value)
          }
        })
        const [, received] = yield* Effect.all([send, receive], { concurrency: 2 })
        expect(order).toEqual(Array.from({ length: writes }, (_, i) => i))
        expect(received.length).toBe(writes * pool.size)
        // Write i filled its buffer with i: had a buffer been refilled while the socket still
        // held it, some block would carry a later write's value.
        for (let i = 0; i < writes; i++) {
          const block = received.subarray(i * pool.size, (i + 1) * pool.size)
          expect(block.every((byte) => byte === i)).toBe(true)
        }
        expect(pool.allocated).toBeLessThan(writes)
      })
    )
  )
})

describe("BufferPool", () => {
  it("lends back what was given, keeps at most `keep` idle buffers, and refuses buffers of another size", () => {
    const pool = new BufferPool(16, 2)
    const a = pool.take()
    const b = pool.take()
    const c = pool.take()
    expect(pool.allocated).toBe(3)
    pool.give(a)
    pool.give(b)
    pool.give(c)
    expect(pool.idle).toBe(2)
    pool.give(new Uint8Array(8))
    expect(pool.idle).toBe(2)
    expect(pool.take()).toBe(b)
    expect(pool.take()).toBe(a)
    expect(pool.allocated).toBe(3)
  })
})
