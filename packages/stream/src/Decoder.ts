import { Result } from "effect"
import { crc32 } from "./Crc32.js"
import { FormatError } from "./FormatError.js"
import {
  BodyLength,
  type Chunk,
  ChunkPrefixBytes,
  controlKindOfCode,
  DefaultMaxFrameBytes,
  decodeDeviceId,
  deviceKindOfCode,
  type Frame,
  FrameHeaderBytes,
  type FrameType,
  frameTypeOfCode,
  Magic,
  type Manifest,
  type ManifestDevice,
  MaxCompatBytes,
  MaxDeviceIdBytes,
  MaxDevices,
  manifestViolation,
  NoDevice,
  PreambleBytes,
  SupportedVersions
} from "./Frame.js"
import { Sequence } from "./Sequence.js"

/** Settings of a decoder. */
export interface DecoderOptions {
  /**
   * Largest frame (header and body) accepted; a header declaring more fails with
   * `FrameTooLarge` before any of its body is buffered. Default `DefaultMaxFrameBytes`.
   */
  readonly maxFrameBytes?: number
  /**
   * The manifest carried by the opposite direction of the channel. A stream without a
   * manifest of its own (the destination's control stream) names those devices in its
   * control frames; without this, such a control frame fails with `UnknownDevice`.
   */
  readonly peerManifest?: Manifest
  /**
   * The pushed buffers are lent: the caller reuses their memory once it has called `detach`.
   * Frames other than chunks are then copied out of them whole (a manifest or a control
   * message is the caller's to keep); chunk payloads stay views, valid until the next `detach`.
   * Default false.
   */
  readonly lent?: boolean
}

/**
 * An incremental, strict decoder of one migration stream. Push bytes as they arrive, split
 * anywhere; pull whole frames. It never throws and never waits: every outcome is a value.
 *
 * Chunk payloads are never copied: they are views into the pushed buffers. A chunk frame whose
 * payload arrived in several pushed buffers is returned, once its checksum has been verified,
 * as consecutive `Chunk`s of the same device, one per buffer: the frames returned are
 * therefore not one-to-one with the chunk frames on the wire (`StreamEnd.chunks` counts those),
 * but each device's bytes are exactly the concatenation of its payloads. Other frames are
 * copied into one buffer when they span pushed buffers (they are small).
 *
 * Memory: it holds the bytes pushed and not yet consumed, and nothing else of size. A caller
 * that pushes only after `next` returned `undefined` therefore holds at most one frame (which
 * the maximum frame size bounds) plus one pushed buffer. Do not modify a buffer once pushed.
 */
export interface Decoder {
  /** Adds received bytes. */
  readonly push: (bytes: Uint8Array) => void
  /** Declares that no more bytes will come; `next` then reports truncation instead of waiting. */
  readonly end: () => void
  /**
   * The next frame; `undefined` if more input is needed, or once the stream end frame has been
   * returned and no further byte is buffered (`complete`). A failure is final: every later
   * call returns the same error.
   */
  readonly next: () => Result.Result<Frame | undefined, FormatError>
  /** Whether the stream end frame has been returned. */
  readonly complete: boolean
  /** Stream offset of the next byte to decode (bytes consumed so far). */
  readonly offset: number
  /** Bytes pushed and not yet consumed. */
  readonly buffered: number
  /** The manifest, once decoded. */
  readonly manifest: Manifest | undefined
  /**
   * Stops referring to the pushed buffers (`lent` decoders): the bytes not yet decoded (a partial
   * frame, at most one frame) and any chunk pieces not yet returned are copied into memory of the
   * decoder's own, so that the caller may reuse every buffer pushed so far. Chunk payloads
   * returned earlier may point into the decoder's memory, which the next `detach` reuses.
   */
  readonly detach: () => void
}

/** A new decoder, expecting the preamble first. */
export const makeDecoder = (options: DecoderOptions = {}): Decoder => new StreamDecoder(options)

interface PendingHeader {
  readonly frameType: FrameType
  readonly length: number
  readonly bodyCrc: number
  readonly offset: number
}

class StreamDecoder implements Decoder {
  private readonly maxFrameBytes: number
  private readonly sequence: Sequence
  private readonly lent: boolean
  /** The decoder's own memory for `detach`, two buffers used in turn (one may be the source of the copy). */
  private owned: [Uint8Array, Uint8Array] = [empty, empty]
  private ownedTurn: 0 | 1 = 0
  private segments: Array<Uint8Array> = []
  /** Index of the first segment with unread bytes, and the first unread byte in it. */
  private head = 0
  private headPos = 0
  private stage: "preamble" | "frames" | "ended" = "preamble"
  private pending: PendingHeader | undefined = undefined
  private failure: FormatError | undefined = undefined
  private inputEnded = false
  /** Further pieces of a chunk frame that arrived in several buffers, already verified. */
  private pieces: Array<Chunk> = []
  offset = 0
  buffered = 0
  manifest: Manifest | undefined = undefined

  constructor(options: DecoderOptions) {
    this.maxFrameBytes = options.maxFrameBytes ?? DefaultMaxFrameBytes
    this.sequence = new Sequence(options.peerManifest)
    this.lent = options.lent ?? false
  }

  detach(): void {
    // Pieces not yet returned: copied one by one (a reader drains them before reading, so rare).
    if (this.pieces.length > 0)
      this.pieces = this.pieces.map((piece) => ({ ...piece, payload: new Uint8Array(piece.payload) }))
    const n = this.buffered
    if (n === 0) {
      this.segments = []
      this.head = 0
      this.headPos = 0
      return
    }
    // Into the buffer not used last time: the unread bytes may lie in the other one.
    this.ownedTurn = this.ownedTurn === 0 ? 1 : 0
    let target = this.owned[this.ownedTurn]
    if (target.length < n) {
      target = new Uint8Array(Math.max(n, Math.min(2 * target.length, this.maxFrameBytes)))
      this.owned[this.ownedTurn] = target
    }
    let filled = 0
    let pos = this.headPos
    for (let i = this.head; i < this.segments.length; i++) {
      const segment = this.segments[i] as Uint8Array
      const part = pos === 0 ? segment : segment.subarray(pos)
      target.set(part, filled)
      filled += part.length
      pos = 0
    }
    this.segments = [target.subarray(0, n)]
    this.head = 0
    this.headPos = 0
  }

  get complete(): boolean {
    return this.stage === "ended"
  }

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return
    if (this.head > 32 && this.head * 2 > this.segments.length) {
      this.segments = this.segments.slice(this.head)
      this.head = 0
    }
    this.segments.push(bytes)
    this.buffered += bytes.length
  }

  end(): void {
    this.inputEnded = true
  }

  next(): Result.Result<Frame | undefined, FormatError> {
    if (this.failure !== undefined) return Result.fail(this.failure)
    const piece = this.pieces.shift()
    if (piece !== undefined) return Result.succeed(piece)
    const outcome = this.step()
    if (outcome instanceof Error) {
      this.failure = outcome
      return Result.fail(outcome)
    }
    return Result.succeed(outcome)
  }

  private step(): Frame | undefined | FormatError {
    if (this.stage === "preamble") {
      const error = this.preamble()
      if (error !== undefined || this.stage === "preamble") return error
    }
    if (this.stage === "ended") {
      return this.buffered > 0
        ? FormatError.dataAfterStreamEnd({ offset: this.offset, bytes: this.buffered })
        : undefined
    }
    if (this.pending === undefined) {
      if (this.buffered < FrameHeaderBytes) return this.starved("header", FrameHeaderBytes)
      const header = this.header()
      if (header instanceof Error) return header
      this.pending = header
    }
    const pending = this.pending
    if (this.buffered < pending.length) return this.starved("body", pending.length)
    this.pending = undefined
    if (pending.frameType === "Chunk") return this.chunk(pending)
    // From lent buffers, a frame other than a chunk is copied out whole: it is the caller's to keep.
    const body = this.lent ? new Uint8Array(this.take(pending.length)) : this.take(pending.length)
    const actual = crc32(body)
    if (actual !== pending.bodyCrc) return bodyMismatch(pending, actual)
    const frame = this.body(pending.frameType, pending.offset, body)
    if (!(frame instanceof Error) && frame._tag === "StreamEnd") this.stage = "ended"
    return frame
  }

  /**
   * A chunk frame, taken as views of the buffers it lies in: the checksum runs over them in
   * turn, and the payload comes out as one `Chunk` per buffer (the first returned, the rest queued).
   */
  private chunk(pending: PendingHeader): Chunk | FormatError {
    const views = this.takeViews(pending.length)
    let actual = 0
    for (const view of views) actual = crc32(view, actual)
    if (actual !== pending.bodyCrc) return bodyMismatch(pending, actual)
    const device = chunkDevice(views)
    const refused = this.sequence.chunk(device, pending.length - ChunkPrefixBytes, pending.offset)
    if (refused !== undefined) return refused
    // The payload: the views past the device index, one `Chunk` each (no copy, no array of them).
    let skip = ChunkPrefixBytes
    let first: Chunk | undefined
    for (const view of views) {
      if (view.length <= skip) {
        skip -= view.length
        continue
      }
      const chunk: Chunk = { _tag: "Chunk", device, payload: skip === 0 ? view : view.subarray(skip) }
      skip = 0
      if (first === undefined) first = chunk
      else this.pieces.push(chunk)
    }
    return first ?? { _tag: "Chunk", device, payload: empty }
  }

  /** Nothing to decode yet: wait for input, or report where it ended. */
  private starved(inside: "header" | "body", need: number): FormatError | undefined {
    if (!this.inputEnded) return undefined
    const between = inside === "header" && this.buffered === 0
    return FormatError.truncated({
      offset: this.offset + this.buffered,
      inside: between ? "stream" : inside,
      missing: between ? 0 : need - this.buffered
    })
  }

  private preamble(): FormatError | undefined {
    // The magic is checked on whatever prefix has arrived, so a stranger is refused at once.
    const prefix = this.peek(Math.min(this.buffered, Magic.length))
    if (!prefix.every((b, i) => b === Magic[i])) {
      return FormatError.wrongMagic({ offset: 0, found: Buffer.from(prefix).toString("hex") })
    }
    if (this.buffered < PreambleBytes) {
      return this.inputEnded
        ? FormatError.truncated({ offset: this.buffered, inside: "preamble", missing: PreambleBytes - this.buffered })
        : undefined
    }
    const bytes = this.take(PreambleBytes)
    const view = viewOf(bytes)
    const expected = view.getUint32(12, true)
    const actual = crc32(bytes.subarray(0, 12))
    if (expected !== actual) {
      return FormatError.checksumMismatch({ offset: 0, region: "preamble", frameType: undefined, expected, actual })
    }
    const version = view.getUint32(8, true)
    if (!SupportedVersions.includes(version)) {
      return FormatError.unsupportedVersion({ offset: 0, version, supported: SupportedVersions })
    }
    this.stage = "frames"
    return undefined
  }

  /** Reads and checks a frame header; nothing of the body is read until all of this holds. */
  private header(): PendingHeader | FormatError {
    const offset = this.offset
    // Read in place, without a DataView: this runs once per frame.
    const bytes = this.take(FrameHeaderBytes)
    const expected = u32(bytes, 12)
    const actual = crc32(bytes.subarray(0, 12))
    if (expected !== actual) {
      return FormatError.checksumMismatch({ offset, region: "header", frameType: undefined, expected, actual })
    }
    const code = bytes[0] ?? 0
    const frameType = frameTypeOfCode(code)
    if (frameType === undefined) return FormatError.unknownFrameType({ offset, code })
    const reserved = (bytes[1] ?? 0) | (bytes[2] ?? 0) | (bytes[3] ?? 0)
    if (reserved !== 0) return malformed(offset, frameType, "reserved", "header bytes 1-3 must be 0")
    const length = u32(bytes, 4)
    if (FrameHeaderBytes + length > this.maxFrameBytes) {
      return FormatError.frameTooLarge({
        offset,
        frameType,
        length: FrameHeaderBytes + length,
        max: this.maxFrameBytes
      })
    }
    const bounds = BodyLength[frameType]
    if (length < bounds.min || length > bounds.max) {
      const expectation = bounds.min === bounds.max ? `${bounds.min}` : `${bounds.min} to ${bounds.max}`
      return malformed(offset, frameType, "length", `body of ${length} bytes, expected ${expectation}`)
    }
    const misplaced = this.sequence.place(frameType, offset)
    if (misplaced !== undefined) return misplaced
    return { frameType, length, bodyCrc: u32(bytes, 8), offset }
  }

  /** Decodes a checksummed body and applies the ordering rules. */
  private body(frameType: Exclude<FrameType, "Chunk">, offset: number, body: Uint8Array): Frame | FormatError {
    const view = viewOf(body)
    switch (frameType) {
      case "DeviceEnd": {
        const device = view.getUint32(0, true)
        const bytes = getU64(view, 4)
        if (bytes === undefined) return malformed(offset, "DeviceEnd", "bytes", "exceeds 2^53 - 1")
        return this.sequence.deviceEnd(device, bytes, offset) ?? { _tag: "DeviceEnd", device, bytes }
      }
      case "Control": {
        const code = view.getUint8(0)
        const kind = controlKindOfCode(code)
        if (kind === undefined) return malformed(offset, "Control", "kind", `unknown control kind ${code}`)
        if ((view.getUint8(1) | view.getUint16(2, true)) !== 0) {
          return malformed(offset, "Control", "reserved", "body bytes 1-3 must be 0")
        }
        const raw = view.getUint32(4, true)
        const device = raw === NoDevice ? undefined : raw
        const payload = body.subarray(8)
        return this.sequence.control(device, offset) ?? { _tag: "Control", kind, device, payload }
      }
      case "StreamEnd": {
        const bytes = getU64(view, 0)
        if (bytes === undefined) return malformed(offset, "StreamEnd", "bytes", "exceeds 2^53 - 1")
        const chunks = getU64(view, 8)
        if (chunks === undefined) return malformed(offset, "StreamEnd", "chunks", "exceeds 2^53 - 1")
        return this.sequence.streamEnd(bytes, chunks, offset) ?? { _tag: "StreamEnd", bytes, chunks }
      }
      case "Manifest": {
        const manifest = parseManifest(body, offset)
        if (manifest instanceof Error) return manifest
        const misplaced = this.sequence.manifest(manifest, offset)
        if (misplaced !== undefined) return misplaced
        this.manifest = manifest
        return manifest
      }
    }
  }

  /** The next `n` buffered bytes without consuming them (a copy only if they span segments). */
  private peek(n: number): Uint8Array {
    const first = this.segments[this.head]
    if (first === undefined || n === 0) return new Uint8Array(0)
    if (first.length - this.headPos >= n) return first.subarray(this.headPos, this.headPos + n)
    const out = new Uint8Array(n)
    let filled = 0
    let pos = this.headPos
    for (let i = this.head; filled < n; i++) {
      const segment = this.segments[i]
      if (segment === undefined) break
      const part = segment.subarray(pos, pos + (n - filled))
      out.set(part, filled)
      filled += part.length
      pos = 0
    }
    return out
  }

  /** Consumes `n <= buffered` bytes: a view when they lie in one segment, else one copy. */
  private take(n: number): Uint8Array {
    const first = this.segments[this.head]
    if (first !== undefined && first.length - this.headPos >= n) {
      const out = first.subarray(this.headPos, this.headPos + n)
      this.advance(n)
      return out
    }
    const out = Buffer.allocUnsafe(n)
    let filled = 0
    while (filled < n) {
      const segment = this.segments[this.head]
      if (segment === undefined) break
      const part = segment.subarray(this.headPos, this.headPos + (n - filled))
      out.set(part, filled)
      filled += part.length
      this.advance(part.length)
    }
    return out
  }

  /** Consumes `n <= buffered` bytes as views, one per segment they lie in. */
  private takeViews(n: number): Array<Uint8Array> {
    const views: Array<Uint8Array> = []
    let left = n
    while (left > 0) {
      const segment = this.segments[this.head]
      if (segment === undefined) break
      const view = segment.subarray(this.headPos, this.headPos + left)
      views.push(view)
      left -= view.length
      this.advance(view.length)
    }
    return views
  }

  private advance(n: number): void {
    this.headPos += n
    this.buffered -= n
    this.offset += n
    const first = this.segments[this.head]
    if (first !== undefined && this.headPos >= first.length) {
      this.segments[this.head] = empty
      this.head += 1
      this.headPos = 0
    }
  }
}

const empty = new Uint8Array(0)

/** The little-endian u32 at `at` of `bytes` (which holds it). */
const u32 = (bytes: Uint8Array, at: number): number =>
  ((bytes[at] ?? 0) | ((bytes[at + 1] ?? 0) << 8) | ((bytes[at + 2] ?? 0) << 16) | ((bytes[at + 3] ?? 0) << 24)) >>> 0

/** The device index opening a chunk body laid out in `views`: read in place unless it is split. */
const chunkDevice = (views: ReadonlyArray<Uint8Array>): number => {
  const first = views[0]
  if (first !== undefined && first.length >= ChunkPrefixBytes) return u32(first, 0)
  const prefix = new Uint8Array(ChunkPrefixBytes)
  let filled = 0
  for (const view of views) {
    const k = Math.min(ChunkPrefixBytes - filled, view.length)
    prefix.set(view.subarray(0, k), filled)
    filled += k
    if (filled === ChunkPrefixBytes) break
  }
  return u32(prefix, 0)
}

const bodyMismatch = (pending: PendingHeader, actual: number): FormatError =>
  FormatError.checksumMismatch({
    offset: pending.offset,
    region: "body",
    frameType: pending.frameType,
    expected: pending.bodyCrc,
    actual
  })

/**
 * Manifest body: `count:u32`, then per device `kind:u8 flags:u8 idLength:u16 compatLength:u32
 * id[idLength] compat[compatLength]`, and nothing after the last device.
 */
const parseManifest = (body: Uint8Array, offset: number): Manifest | FormatError => {
  const view = viewOf(body)
  const count = view.getUint32(0, true)
  if (count < 1 || count > MaxDevices)
    return malformed(offset, "Manifest", "count", `${count}, expected 1 to ${MaxDevices}`)
  const devices: Array<ManifestDevice> = []
  let p = 4
  for (let i = 0; i < count; i++) {
    const field = `devices[${i}]`
    if (p + 8 > body.length) return malformed(offset, "Manifest", field, "body ends inside the device entry")
    const kindCode = view.getUint8(p)
    const kind = deviceKindOfCode(kindCode)
    if (kind === undefined) return malformed(offset, "Manifest", `${field}.kind`, `unknown kind code ${kindCode}`)
    const flags = view.getUint8(p + 1)
    const idLength = view.getUint16(p + 2, true)
    const compatLength = view.getUint32(p + 4, true)
    if (idLength < 1 || idLength > MaxDeviceIdBytes) {
      return malformed(offset, "Manifest", `${field}.id`, `${idLength} bytes, expected 1 to ${MaxDeviceIdBytes}`)
    }
    if (compatLength > MaxCompatBytes) {
      return malformed(offset, "Manifest", `${field}.compat`, `${compatLength} bytes, at most ${MaxCompatBytes}`)
    }
    p += 8
    if (p + idLength + compatLength > body.length) {
      return malformed(offset, "Manifest", field, "body ends inside the device id or compatibility data")
    }
    const id = decodeDeviceId(body.subarray(p, p + idLength))
    if (id === undefined) return malformed(offset, "Manifest", `${field}.id`, "not valid UTF-8")
    const compat = body.subarray(p + idLength, p + idLength + compatLength)
    p += idLength + compatLength
    devices.push({ id, kind, flags, compat })
  }
  if (p !== body.length)
    return malformed(offset, "Manifest", "length", `${body.length - p} bytes after the last device`)
  const violation = manifestViolation(devices)
  if (violation !== undefined) return malformed(offset, "Manifest", violation.field, violation.reason)
  return { _tag: "Manifest", devices }
}

const malformed = (offset: number, frameType: FrameType, field: string, reason: string): FormatError =>
  FormatError.malformedFrame({ offset, frameType, field, reason })

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** A u64 as a number, or `undefined` past 2^53 - 1. */
const getU64 = (view: DataView, at: number): number | undefined => {
  const high = view.getUint32(at + 4, true)
  return high >= 0x20_0000 ? undefined : high * 0x1_0000_0000 + view.getUint32(at, true)
}
