import { describe, expect, it } from "@effect/vitest"
import { DefaultMaxFrameBytes, encodeFrame, type Frame, makeDecoder } from "@lockstep/stream"
import { Result } from "effect"
import * as fc from "fast-check"
import { bytesOf, decodeSlices, exploded, planArb } from "./Plans.js"

const cutsArb = (length: number) => fc.array(fc.integer({ min: 0, max: length }), { maxLength: 12 })

describe("Decoder", () => {
  it("decodes random interleavings of every frame kind, split at random offsets, to the frames encoded", () => {
    fc.assert(
      fc.property(
        planArb().chain((frames) => {
          const bytes = bytesOf(frames)
          return fc.tuple(fc.constant(frames), fc.constant(bytes), cutsArb(bytes.length))
        }),
        ([frames, bytes, cuts]) => {
          const decoded = decodeSlices(bytes, cuts)
          expect(decoded.error).toBeUndefined()
          expect(decoded.complete).toBe(true)
          expect(exploded(decoded.frames)).toEqual(exploded(frames))
        }
      ),
      { numRuns: 300 }
    )
  })

  it("decodes a stream pushed one byte at a time", () => {
    fc.assert(
      fc.property(planArb({ maxSteps: 8 }), (frames) => {
        const bytes = bytesOf(frames)
        const decoded = decodeSlices(
          bytes,
          Array.from({ length: bytes.length }, (_, i) => i)
        )
        expect(decoded.error).toBeUndefined()
        expect(exploded(decoded.frames)).toEqual(exploded(frames))
      }),
      { numRuns: 30 }
    )
  })

  /**
   * Lent buffers, as a transport with recycled reads gives them: every slice lands in the same
   * scratch buffer, overwritten with garbage before the next one. Each frame is copied when it
   * comes out (a chunk's payload is valid until then); manifests and control frames are kept
   * as returned and compared at the end, after every overwrite.
   */
  const decodeLent = (bytes: Uint8Array, cuts: ReadonlyArray<number>, detach: boolean) => {
    const decoder = makeDecoder({ lent: true })
    const scratch = new Uint8Array(bytes.length)
    const frames: Array<Frame> = []
    let error: unknown
    const points = [...new Set(cuts.map((c) => Math.min(Math.max(c, 0), bytes.length)))].sort((a, b) => a - b)
    let from = 0
    for (const to of [...points, bytes.length]) {
      if (detach) decoder.detach()
      scratch.fill(0xee)
      scratch.set(bytes.subarray(from, to))
      decoder.push(scratch.subarray(0, to - from))
      from = to
      for (;;) {
        const result = decoder.next()
        if (Result.isFailure(result)) {
          error = result.failure
          break
        }
        const frame = result.success
        if (frame === undefined) break
        frames.push(frame._tag === "Chunk" ? { ...frame, payload: new Uint8Array(frame.payload) } : frame)
      }
      if (error !== undefined) break
    }
    return { frames, error, complete: decoder.complete }
  }

  it("decodes lent buffers, reused after each detach, to the frames encoded; manifests and controls stay intact", () => {
    fc.assert(
      fc.property(
        planArb({ maxPayload: 200 }).chain((frames) => {
          const bytes = bytesOf(frames)
          return fc.tuple(fc.constant(frames), fc.constant(bytes), cutsArb(bytes.length))
        }),
        ([frames, bytes, cuts]) => {
          const decoded = decodeLent(bytes, cuts, true)
          expect(decoded.error).toBeUndefined()
          expect(decoded.complete).toBe(true)
          expect(exploded(decoded.frames)).toEqual(exploded(frames))
        }
      ),
      { numRuns: 300 }
    )
  })

  it("without detach, reusing a lent buffer under a partial frame breaks it (what detach prevents)", () => {
    const payload = Uint8Array.from({ length: 3000 }, (_, i) => i % 251)
    const frames: Array<Frame> = [
      { _tag: "Manifest", devices: [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array([1, 2, 3]) }] },
      { _tag: "Chunk", device: 0, payload },
      { _tag: "DeviceEnd", device: 0, bytes: payload.length },
      { _tag: "StreamEnd", bytes: payload.length, chunks: 1 }
    ]
    const bytes = bytesOf(frames)
    // Cut in the middle of the chunk's payload: its first half is still held when the buffer is reused.
    const cut = bytes.length - 1500
    expect(decodeLent(bytes, [cut], true).error).toBeUndefined()
    expect(decodeLent(bytes, [cut], false).error).toMatchObject({ _tag: "FormatError" })
  })

  it("hands out chunk payloads as views of the pushed buffer when a frame lies in one buffer", () => {
    const payload = new Uint8Array(1000).fill(7)
    const frames: Array<Frame> = [
      { _tag: "Manifest", devices: [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array(0) }] },
      { _tag: "Chunk", device: 0, payload },
      { _tag: "DeviceEnd", device: 0, bytes: 1000 },
      { _tag: "StreamEnd", bytes: 1000, chunks: 1 }
    ]
    const bytes = bytesOf(frames)
    const decoder = makeDecoder()
    decoder.push(bytes)
    const chunk = [1, 2].map(() => Result.getOrThrow(decoder.next()))[1]
    expect(chunk?._tag).toBe("Chunk")
    if (chunk?._tag === "Chunk") {
      expect(chunk.payload.buffer).toBe(bytes.buffer)
      expect(chunk.payload.length).toBe(1000)
    }
  })

  it("returns a chunk frame spanning pushed buffers as consecutive views of them, after its checksum", () => {
    const payload = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff)
    const frames: Array<Frame> = [
      { _tag: "Manifest", devices: [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array(0) }] },
      { _tag: "Chunk", device: 0, payload },
      { _tag: "DeviceEnd", device: 0, bytes: 1000 },
      { _tag: "StreamEnd", bytes: 1000, chunks: 1 }
    ]
    const bytes = bytesOf(frames)
    const pieces = [bytes.slice(0, 100), bytes.slice(100, 500), bytes.slice(500, 900), bytes.slice(900)]
    const decoder = makeDecoder()
    const out: Array<Frame> = []
    for (const piece of pieces.slice(0, 3)) {
      decoder.push(piece)
      for (let f = Result.getOrThrow(decoder.next()); f !== undefined; f = Result.getOrThrow(decoder.next()))
        out.push(f)
    }
    // Nothing of the chunk comes out before its last byte (and checksum) has arrived.
    expect(out.map((f) => f._tag)).toEqual(["Manifest"])
    decoder.push(pieces[3] ?? new Uint8Array(0))
    for (let f = Result.getOrThrow(decoder.next()); f !== undefined; f = Result.getOrThrow(decoder.next())) out.push(f)
    const chunks = out.flatMap((f) => (f._tag === "Chunk" ? [f.payload] : []))
    expect(chunks.map((c) => c.buffer)).toEqual([pieces[0], pieces[1], pieces[2], pieces[3]].map((p) => p?.buffer))
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(payload))
    expect(out.map((f) => f._tag)).toEqual(["Manifest", "Chunk", "Chunk", "Chunk", "Chunk", "DeviceEnd", "StreamEnd"])
  })

  it("accepts a chunk of the default maximum frame size exactly", () => {
    const payload = new Uint8Array(DefaultMaxFrameBytes - 20)
    const frames: Array<Frame> = [
      { _tag: "Manifest", devices: [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array(0) }] },
      { _tag: "Chunk", device: 0, payload },
      { _tag: "DeviceEnd", device: 0, bytes: payload.length },
      { _tag: "StreamEnd", bytes: payload.length, chunks: 1 }
    ]
    const decoded = decodeSlices(bytesOf(frames), [5000, 70_000])
    expect(decoded.error).toBeUndefined()
    expect(decoded.complete).toBe(true)
  })

  it("holds no more than one frame and one pushed buffer when fed as it asks", () => {
    // 64 chunks of 64 KiB pushed in 10 KiB slices: the decoder never buffers more than a frame plus a slice.
    const payload = new Uint8Array(64 * 1024)
    const frames: Array<Frame> = [
      { _tag: "Manifest", devices: [{ id: "gpu0", kind: "pci", flags: 7, compat: new Uint8Array(0) }] },
      ...Array.from({ length: 64 }, (): Frame => ({ _tag: "Chunk", device: 0, payload })),
      { _tag: "DeviceEnd", device: 0, bytes: 64 * payload.length },
      { _tag: "StreamEnd", bytes: 64 * payload.length, chunks: 64 }
    ]
    const bytes = bytesOf(frames)
    const decoder = makeDecoder()
    let peak = 0
    for (let at = 0; at < bytes.length; at += 10_240) {
      decoder.push(bytes.subarray(at, at + 10_240))
      peak = Math.max(peak, decoder.buffered)
      while (Result.getOrThrow(decoder.next()) !== undefined) {}
    }
    decoder.end()
    expect(Result.getOrThrow(decoder.next())).toBeUndefined()
    expect(decoder.complete).toBe(true)
    expect(peak).toBeLessThanOrEqual(64 * 1024 + 20 + 10_240)
  })

  it("encodes the layout FORMAT.md documents", () => {
    const parts = Result.getOrThrow(encodeFrame({ _tag: "Chunk", device: 3, payload: new Uint8Array([0xaa, 0xbb]) }))
    const head = Buffer.from(parts[0] ?? new Uint8Array(0))
    expect(head.length).toBe(20)
    expect(head.readUInt8(0)).toBe(2)
    expect(head.readUInt32LE(4)).toBe(6)
    expect(head.readUInt32LE(16)).toBe(3)
    expect(parts[1]).toEqual(new Uint8Array([0xaa, 0xbb]))
  })
})
