import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { FileTransport, FrameReader, FrameWriter, type ManifestDevice } from "@lockstep/stream"
import { Effect, Stream } from "effect"

const devices: ReadonlyArray<ManifestDevice> = [
  { id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array([1, 2, 3]) },
  { id: "vgpu0", kind: "mdev", flags: 1, compat: new Uint8Array(0) }
]

const tempDir = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "lockstep-stream-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
)

describe("FileTransport", () => {
  it.live("saves a stream to a file and reads the same frames back", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "checkpoint.lockstep")
      const state = (d: number) => Uint8Array.from({ length: 700_000 }, (_, k) => (k * (d + 3)) & 0xff)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const writer = yield* FrameWriter.make(yield* FileTransport.sink(file), { chunkBytes: 64 * 1024 })
          yield* writer.manifest(devices)
          yield* writer.chunk(0, state(0))
          yield* writer.control("switchover-ack", { device: 0 })
          yield* writer.chunk(1, state(1))
          yield* writer.endDevice(1)
          yield* writer.endDevice(0)
          yield* writer.end
        })
      )
      const frames = yield* Effect.scoped(
        Effect.flatMap(FileTransport.source(file, { readBytes: 100_000 }), (source) =>
          Stream.runCollect(FrameReader.frames(source))
        )
      )
      expect(frames[0]).toMatchObject({ _tag: "Manifest", devices: [{ id: "gpu0" }, { id: "vgpu0", kind: "mdev" }] })
      for (const d of [0, 1]) {
        const parts = frames.flatMap((f) => (f._tag === "Chunk" && f.device === d ? [f.payload] : []))
        expect(Buffer.concat(parts).equals(state(d))).toBe(true)
      }
      expect(frames.at(-1)).toEqual({ _tag: "StreamEnd", bytes: 1_400_000, chunks: 22 })
    })
  )

  it.live("a stream whose writer never ended reads back as truncated", () =>
    Effect.gen(function* () {
      const file = path.join(yield* tempDir, "partial.lockstep")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sink = yield* FileTransport.sink(file)
          const writer = yield* FrameWriter.make(sink)
          yield* writer.manifest(devices)
          yield* writer.chunk(0, new Uint8Array(1000))
          yield* sink.end
        })
      )
      const error = yield* Effect.flip(
        Effect.scoped(Effect.flatMap(FileTransport.source(file), (s) => Stream.runDrain(FrameReader.frames(s))))
      )
      expect(error).toMatchObject({ _tag: "FormatError", reason: { _tag: "Truncated", inside: "stream" } })
    })
  )

  it.live("a missing file fails to open with a typed error", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(FileTransport.source(path.join(yield* tempDir, "absent")))
      expect(error).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportFailed", operation: "open", code: "ENOENT" }
      })
    })
  )
})
