import { crc32 } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import {
  encodePreamble,
  type FormatErrorReason,
  type Frame,
  FrameTypeCode,
  type Manifest,
  makeDecoder
} from "@lockstep/stream"
import { Result } from "effect"
import * as fc from "fast-check"
import { bytesOf, decodeSlices, exploded, planArb } from "./Plans.js"

const manifest: Manifest = {
  _tag: "Manifest",
  devices: [
    { id: "gpu0", kind: "pci", flags: 7, compat: new TextEncoder().encode('{"model":"x"}') },
    { id: "nic0", kind: "pci", flags: 3, compat: new Uint8Array(0) }
  ]
}

const payload = (n: number, fill = 1) => new Uint8Array(n).fill(fill)

/** A small valid stream exercising every frame type. */
const small: ReadonlyArray<Frame> = [
  manifest,
  { _tag: "Chunk", device: 0, payload: payload(10) },
  { _tag: "Control", kind: "switchover-ack", device: 0, payload: new Uint8Array(0) },
  { _tag: "Chunk", device: 1, payload: payload(5, 2) },
  { _tag: "DeviceEnd", device: 1, bytes: 5 },
  { _tag: "Chunk", device: 0, payload: payload(3, 3) },
  { _tag: "DeviceEnd", device: 0, bytes: 13 },
  { _tag: "StreamEnd", bytes: 18, chunks: 3 }
]

/** A frame with any type code, body and reserved bytes, with correct checksums unless told. */
const rawFrame = (
  code: number,
  body: Uint8Array,
  options: { readonly reserved?: number; readonly length?: number } = {}
): Uint8Array => {
  const header = Buffer.alloc(16)
  header.writeUInt8(code, 0)
  header.writeUInt8(options.reserved ?? 0, 1)
  header.writeUInt32LE(options.length ?? body.length, 4)
  header.writeUInt32LE(crc32(body), 8)
  header.writeUInt32LE(crc32(header.subarray(0, 12)), 12)
  return Buffer.concat([header, body])
}

const cat = (...parts: ReadonlyArray<Uint8Array>) => Buffer.concat(parts)

const u32 = (...values: ReadonlyArray<number>) => {
  const b = Buffer.alloc(4 * values.length)
  for (const [i, v] of values.entries()) b.writeUInt32LE(v, 4 * i)
  return b
}

/** Decodes whole, returns the error (failing the test if there is none). */
const errorOf = (bytes: Uint8Array, options = {}): FormatErrorReason => {
  const decoded = decodeSlices(bytes, [], options)
  if (decoded.error === undefined) throw new Error(`expected a format error, decoded ${decoded.frames.length} frames`)
  expect(decoded.error._tag).toBe("FormatError")
  return decoded.error.reason
}

const preamble = encodePreamble()
const manifestBytes = bytesOf([manifest]).subarray(16)
const frameBytes = (frames: ReadonlyArray<Frame>) => bytesOf(frames).subarray(16)
const afterManifest = (...frames: ReadonlyArray<Frame>) => cat(preamble, manifestBytes, frameBytes(frames))

describe("Decoder on corrupted streams", () => {
  it("rejects wrong magic from the first bytes, before a whole preamble has arrived", () => {
    const decoder = makeDecoder()
    decoder.push(new TextEncoder().encode("GET "))
    const result = decoder.next()
    expect(Result.isFailure(result) && result.failure.reason._tag).toBe("WrongMagic")
    expect(errorOf(new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n"))).toMatchObject({
      _tag: "WrongMagic",
      offset: 0,
      found: "485454502f312e31"
    })
  })

  it("rejects an unsupported version", () => {
    expect(errorOf(cat(encodePreamble(2), manifestBytes))).toMatchObject({
      _tag: "UnsupportedVersion",
      offset: 0,
      version: 2,
      supported: [1]
    })
  })

  it("rejects a bit flip in the preamble, a header and a body as checksum mismatches", () => {
    const bytes = bytesOf(small)
    const flip = (at: number) => {
      const copy = Uint8Array.from(bytes)
      copy[at] = (copy[at] ?? 0) ^ 0x10
      return copy
    }
    expect(errorOf(flip(9))).toMatchObject({ _tag: "ChecksumMismatch", region: "preamble", offset: 0 })
    expect(errorOf(flip(16 + 5))).toMatchObject({ _tag: "ChecksumMismatch", region: "header", offset: 16 })
    expect(errorOf(flip(16 + 16 + 3))).toMatchObject({
      _tag: "ChecksumMismatch",
      region: "body",
      frameType: "Manifest",
      offset: 16
    })
  })

  it("rejects an unknown frame type", () => {
    expect(errorOf(cat(preamble, rawFrame(9, new Uint8Array(4))))).toMatchObject({
      _tag: "UnknownFrameType",
      offset: 16,
      code: 9
    })
    expect(errorOf(cat(preamble, rawFrame(0, new Uint8Array(0))))).toMatchObject({ _tag: "UnknownFrameType", code: 0 })
  })

  it("rejects an absurd length from the header alone, without buffering the body", () => {
    const header = rawFrame(FrameTypeCode.Chunk, new Uint8Array(0), { length: 0xffff_fff0 }).subarray(0, 16)
    const decoder = makeDecoder()
    decoder.push(cat(preamble, manifestBytes, header))
    const results = [decoder.next(), decoder.next()]
    expect(results[1] !== undefined && Result.isFailure(results[1]) && results[1].failure.reason).toMatchObject({
      _tag: "FrameTooLarge",
      frameType: "Chunk",
      length: 0xffff_fff0 + 16,
      max: 1024 * 1024 + 20
    })
    expect(
      errorOf(afterManifest({ _tag: "Chunk", device: 0, payload: payload(200) }), { maxFrameBytes: 100 })
    ).toMatchObject({ _tag: "FrameTooLarge", length: 16 + 4 + 200, max: 100 })
  })

  it("rejects malformed frames, naming the field", () => {
    const cases: ReadonlyArray<readonly [Uint8Array, string, string]> = [
      [cat(preamble, rawFrame(FrameTypeCode.StreamEnd, new Uint8Array(16), { reserved: 1 })), "StreamEnd", "reserved"],
      [cat(preamble, manifestBytes, rawFrame(FrameTypeCode.DeviceEnd, new Uint8Array(11))), "DeviceEnd", "length"],
      [cat(preamble, manifestBytes, rawFrame(FrameTypeCode.Chunk, new Uint8Array(3))), "Chunk", "length"],
      [
        cat(preamble, rawFrame(FrameTypeCode.Control, cat(Buffer.from([99, 0, 0, 0]), u32(0xffff_ffff)))),
        "Control",
        "kind"
      ],
      [
        cat(preamble, rawFrame(FrameTypeCode.Control, cat(Buffer.from([1, 1, 0, 0]), u32(0xffff_ffff)))),
        "Control",
        "reserved"
      ],
      [
        cat(
          preamble,
          rawFrame(
            FrameTypeCode.Control,
            cat(Buffer.from([1, 0, 0, 0]), u32(0xffff_ffff), new Uint8Array(64 * 1024 + 1))
          )
        ),
        "Control",
        "length"
      ],
      [cat(preamble, rawFrame(FrameTypeCode.StreamEnd, cat(u32(0, 0x20_0000), u32(0, 0)))), "StreamEnd", "bytes"],
      [
        cat(preamble, manifestBytes, rawFrame(FrameTypeCode.DeviceEnd, cat(u32(0), u32(0, 0xffff_ffff)))),
        "DeviceEnd",
        "bytes"
      ]
    ]
    for (const [bytes, frameType, field] of cases) {
      expect(errorOf(bytes)).toMatchObject({ _tag: "MalformedFrame", frameType, field })
    }
  })

  it("rejects malformed manifests, naming the field", () => {
    const entry = (kind: number, flags: number, id: Uint8Array, compat: Uint8Array, compatLength = compat.length) => {
      const fixed = Buffer.alloc(8)
      fixed.writeUInt8(kind, 0)
      fixed.writeUInt8(flags, 1)
      fixed.writeUInt16LE(id.length, 2)
      fixed.writeUInt32LE(compatLength, 4)
      return cat(fixed, id, compat)
    }
    const id = (s: string) => Buffer.from(s, "utf8")
    const none = new Uint8Array(0)
    const cases: ReadonlyArray<readonly [Uint8Array, string]> = [
      [cat(u32(0), entry(1, 7, id("a"), none)), "count"],
      [cat(u32(2000), entry(1, 7, id("a"), none)), "count"],
      [cat(u32(1), entry(9, 7, id("a"), none)), "devices[0].kind"],
      [cat(u32(1), entry(1, 7, new Uint8Array(0), none), id("a")), "devices[0].id"],
      [cat(u32(1), entry(1, 7, Buffer.from([0xc3, 0x28]), none)), "devices[0].id"],
      [cat(u32(1), entry(1, 9, id("a"), none)), "devices[0].flags"],
      [cat(u32(1), entry(1, 7, id("a"), none, 70_000)), "devices[0].compat"],
      [cat(u32(1), entry(1, 7, id("a"), none, 10)), "devices[0]"],
      [cat(u32(2), entry(1, 7, id("a"), none), entry(1, 7, id("a"), none)), "devices[1].id"],
      [cat(u32(1), entry(1, 7, id("a"), none), Buffer.from([0])), "length"],
      [cat(u32(2), entry(1, 7, id("a"), none)), "devices[1]"]
    ]
    for (const [body, field] of cases) {
      expect(errorOf(cat(preamble, rawFrame(FrameTypeCode.Manifest, body)))).toMatchObject({
        _tag: "MalformedFrame",
        frameType: "Manifest",
        field
      })
    }
  })

  it("rejects frames out of order", () => {
    expect(errorOf(cat(preamble, frameBytes([{ _tag: "Chunk", device: 0, payload: payload(1) }])))).toMatchObject({
      _tag: "FrameOutOfOrder",
      frameType: "Chunk",
      offset: 16
    })
    expect(errorOf(cat(preamble, frameBytes([{ _tag: "DeviceEnd", device: 0, bytes: 0 }])))).toMatchObject({
      _tag: "FrameOutOfOrder",
      frameType: "DeviceEnd"
    })
    expect(errorOf(afterManifest(manifest))).toMatchObject({ _tag: "FrameOutOfOrder", frameType: "Manifest" })
  })

  it("rejects unknown device indexes in chunks, end markers and control frames", () => {
    expect(errorOf(afterManifest({ _tag: "Chunk", device: 2, payload: payload(1) }))).toMatchObject({
      _tag: "UnknownDevice",
      frameType: "Chunk",
      device: 2,
      devices: 2
    })
    expect(errorOf(afterManifest({ _tag: "DeviceEnd", device: 7, bytes: 0 }))).toMatchObject({
      _tag: "UnknownDevice",
      frameType: "DeviceEnd",
      device: 7
    })
    const ack = frameBytes([{ _tag: "Control", kind: "switchover-ack", device: 1, payload: new Uint8Array(0) }])
    expect(errorOf(cat(preamble, ack))).toMatchObject({ _tag: "UnknownDevice", frameType: "Control", devices: 0 })
    // The destination's control stream names the devices of the source's manifest.
    const back = cat(preamble, ack, frameBytes([{ _tag: "StreamEnd", bytes: 0, chunks: 0 }]))
    expect(decodeSlices(back, [], { peerManifest: manifest })).toMatchObject({ error: undefined, complete: true })
  })

  it("rejects a chunk after its device's end, a duplicate end, and a wrong device total", () => {
    const end0: Frame = { _tag: "DeviceEnd", device: 0, bytes: 0 }
    expect(errorOf(afterManifest(end0, { _tag: "Chunk", device: 0, payload: payload(1) }))).toMatchObject({
      _tag: "ChunkAfterDeviceEnd",
      device: 0,
      deviceId: "gpu0"
    })
    expect(errorOf(afterManifest(end0, end0))).toMatchObject({ _tag: "DuplicateDeviceEnd", deviceId: "gpu0" })
    expect(
      errorOf(
        afterManifest({ _tag: "Chunk", device: 1, payload: payload(4) }, { _tag: "DeviceEnd", device: 1, bytes: 5 })
      )
    ).toMatchObject({ _tag: "DeviceTotalMismatch", deviceId: "nic0", declared: 5, received: 4 })
  })

  it("rejects a stream end before every device ended, or with wrong totals", () => {
    const end0: Frame = { _tag: "DeviceEnd", device: 0, bytes: 2 }
    const end1: Frame = { _tag: "DeviceEnd", device: 1, bytes: 0 }
    const chunk: Frame = { _tag: "Chunk", device: 0, payload: payload(2) }
    expect(errorOf(afterManifest(chunk, end0, { _tag: "StreamEnd", bytes: 2, chunks: 1 }))).toMatchObject({
      _tag: "DeviceNotEnded",
      deviceIds: ["nic0"]
    })
    expect(errorOf(afterManifest(chunk, end0, end1, { _tag: "StreamEnd", bytes: 3, chunks: 1 }))).toMatchObject({
      _tag: "StreamTotalsMismatch",
      field: "bytes",
      declared: 3,
      counted: 2
    })
    expect(errorOf(afterManifest(chunk, end0, end1, { _tag: "StreamEnd", bytes: 2, chunks: 2 }))).toMatchObject({
      _tag: "StreamTotalsMismatch",
      field: "chunks"
    })
  })

  it("rejects anything after the stream end", () => {
    const bytes = bytesOf(small)
    expect(errorOf(cat(bytes, Buffer.from([0])))).toMatchObject({
      _tag: "DataAfterStreamEnd",
      offset: bytes.length,
      bytes: 1
    })
    const ack = frameBytes([{ _tag: "Control", kind: "commit", device: undefined, payload: new Uint8Array(0) }])
    expect(errorOf(cat(bytes, ack))).toMatchObject({ _tag: "DataAfterStreamEnd", offset: bytes.length })
  })

  it("reports where the input ended: in the preamble, a header, a body, or between frames", () => {
    const bytes = bytesOf(small)
    expect(errorOf(new Uint8Array(0))).toMatchObject({ _tag: "Truncated", inside: "preamble", missing: 16 })
    expect(errorOf(bytes.subarray(0, 10))).toMatchObject({ _tag: "Truncated", inside: "preamble", missing: 6 })
    expect(errorOf(bytes.subarray(0, 20))).toMatchObject({
      _tag: "Truncated",
      inside: "header",
      offset: 20,
      missing: 12
    })
    expect(errorOf(bytes.subarray(0, 40))).toMatchObject({ _tag: "Truncated", inside: "body", offset: 40 })
    expect(errorOf(bytes.subarray(0, 16 + manifestBytes.length))).toMatchObject({
      _tag: "Truncated",
      inside: "stream",
      missing: 0
    })
  })

  it("keeps reporting its first error", () => {
    const decoder = makeDecoder()
    decoder.push(new TextEncoder().encode("garbage!"))
    const first = decoder.next()
    decoder.push(bytesOf(small))
    expect(decoder.next()).toEqual(first)
  })

  it("fails with a typed error, having decoded only a prefix, when the input ends at any offset", () => {
    const bytes = bytesOf(small)
    const frames = exploded(small)
    for (let cut = 0; cut < bytes.length; cut++) {
      const decoded = decodeSlices(bytes.subarray(0, cut), [cut >> 1])
      expect(decoded.error?.reason._tag).toBe("Truncated")
      expect(decoded.complete).toBe(false)
      const prefix = exploded(decoded.frames)
      expect(prefix).toEqual(frames.slice(0, prefix.length))
    }
  })

  it("fails with a typed error for a flip of any single bit", () => {
    const bytes = bytesOf(small)
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const copy = Uint8Array.from(bytes)
      copy[bit >> 3] = (copy[bit >> 3] ?? 0) ^ (1 << (bit & 7))
      const decoded = decodeSlices(copy, [bit >> 4])
      expect(decoded.error, `bit ${bit}`).toBeDefined()
      expect(decoded.complete).toBe(false)
    }
  })

  it("never succeeds on random streams with random bit flips, truncations or garbage, and never throws", () => {
    const mangled = planArb().chain((frames) => {
      const bytes = bytesOf(frames)
      return fc.tuple(
        fc.constant(bytes),
        fc.uniqueArray(fc.nat(bytes.length * 8 - 1), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat(bytes.length - 1), { nil: undefined }),
        fc.array(fc.nat(bytes.length), { maxLength: 6 })
      )
    })
    fc.assert(
      fc.property(mangled, ([bytes, flips, truncateAt, cuts]) => {
        const copy = Uint8Array.from(bytes)
        for (const bit of flips) copy[bit >> 3] = (copy[bit >> 3] ?? 0) ^ (1 << (bit & 7))
        const decoded = decodeSlices(truncateAt === undefined ? copy : copy.subarray(0, truncateAt), cuts)
        expect(decoded.error).toBeDefined()
      }),
      { numRuns: 500 }
    )
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(2000), { maxLength: 6 }), (garbage, cuts) => {
        const decoded = decodeSlices(cat(preamble, garbage), cuts)
        expect(decoded.complete).toBe(false)
        expect(decoded.error).toBeDefined()
      }),
      { numRuns: 500 }
    )
  })
})
