import { Result } from "effect"
import { crc32 } from "./Crc32.js"
import { FormatError } from "./FormatError.js"
import {
  ChunkPrefixBytes,
  ControlKindCode,
  DeviceKindCode,
  encodeDeviceId,
  FormatVersion,
  type Frame,
  FrameHeaderBytes,
  FrameTypeCode,
  Magic,
  MaxControlPayloadBytes,
  manifestViolation,
  NoDevice,
  PreambleBytes,
  type Violation
} from "./Frame.js"

/** The encoded bytes of one frame, in order: write them as one gather write, never separately interleaved. */
export type EncodedFrame = ReadonlyArray<Uint8Array>

/** The 16 bytes that open a stream: magic, version, CRC32 of both. */
export const encodePreamble = (version: number = FormatVersion): Uint8Array => {
  const bytes = new Uint8Array(PreambleBytes)
  bytes.set(Magic, 0)
  const view = viewOf(bytes)
  view.setUint32(8, version, true)
  view.setUint32(12, crc32(bytes.subarray(0, 12)), true)
  return bytes
}

/**
 * Encodes one frame. A chunk's payload is not copied: it is the second element of the result,
 * after a 20-byte buffer holding the header and the device index. Fails with `MalformedFrame`
 * (at `offset`, the stream offset the frame would start at) if a field cannot be represented or
 * breaks a content rule; ordering rules are the writer's (`FrameWriter`).
 */
export const encodeFrame = (frame: Frame, offset = 0): Result.Result<EncodedFrame, FormatError> => {
  const violation = violationOf(frame)
  if (violation !== undefined) {
    return Result.fail(FormatError.malformedFrame({ offset, frameType: frame._tag, ...violation }))
  }
  switch (frame._tag) {
    case "Chunk": {
      const head = new Uint8Array(FrameHeaderBytes + ChunkPrefixBytes)
      const view = viewOf(head)
      view.setUint32(FrameHeaderBytes, frame.device, true)
      const bodyCrc = crc32(frame.payload, crc32(head.subarray(FrameHeaderBytes)))
      writeHeader(view, FrameTypeCode.Chunk, ChunkPrefixBytes + frame.payload.length, bodyCrc, head)
      return Result.succeed([head, frame.payload])
    }
    case "DeviceEnd":
      return Result.succeed([
        single(FrameTypeCode.DeviceEnd, 12, (view, at) => {
          view.setUint32(at, frame.device, true)
          setU64(view, at + 4, frame.bytes)
        })
      ])
    case "StreamEnd":
      return Result.succeed([
        single(FrameTypeCode.StreamEnd, 16, (view, at) => {
          setU64(view, at, frame.bytes)
          setU64(view, at + 8, frame.chunks)
        })
      ])
    case "Control":
      return Result.succeed([
        single(FrameTypeCode.Control, 8 + frame.payload.length, (view, at, bytes) => {
          view.setUint8(at, ControlKindCode[frame.kind])
          view.setUint32(at + 4, frame.device ?? NoDevice, true)
          bytes.set(frame.payload, at + 8)
        })
      ])
    case "Manifest": {
      const ids = frame.devices.map((d) => encodeDeviceId(d.id))
      let length = 4
      for (const [i, d] of frame.devices.entries()) length += 8 + (ids[i]?.length ?? 0) + d.compat.length
      return Result.succeed([
        single(FrameTypeCode.Manifest, length, (view, at, bytes) => {
          view.setUint32(at, frame.devices.length, true)
          let p = at + 4
          for (const [i, d] of frame.devices.entries()) {
            const id = ids[i] ?? new Uint8Array(0)
            view.setUint8(p, DeviceKindCode[d.kind])
            view.setUint8(p + 1, d.flags)
            view.setUint16(p + 2, id.length, true)
            view.setUint32(p + 4, d.compat.length, true)
            bytes.set(id, p + 8)
            bytes.set(d.compat, p + 8 + id.length)
            p += 8 + id.length + d.compat.length
          }
        })
      ])
    }
  }
}

/** Largest integer a u64 field carries here: a JS number stays exact up to 2^53 - 1. */
const isCount = (n: number): boolean => Number.isSafeInteger(n) && n >= 0

const isDeviceIndex = (n: number): boolean => Number.isInteger(n) && n >= 0 && n < NoDevice

const violationOf = (frame: Frame): Violation | undefined => {
  switch (frame._tag) {
    case "Manifest":
      return manifestViolation(frame.devices)
    case "Chunk":
      if (!isDeviceIndex(frame.device)) return { field: "device", reason: `${frame.device} is not a device index` }
      return frame.payload.length > 0xffff_ffff - ChunkPrefixBytes
        ? { field: "payload", reason: `${frame.payload.length} bytes do not fit a frame` }
        : undefined
    case "DeviceEnd":
      if (!isDeviceIndex(frame.device)) return { field: "device", reason: `${frame.device} is not a device index` }
      return isCount(frame.bytes) ? undefined : { field: "bytes", reason: `${frame.bytes} is not a byte count` }
    case "Control":
      if (!Object.hasOwn(ControlKindCode, frame.kind)) return { field: "kind", reason: `unknown kind ${frame.kind}` }
      if (frame.device !== undefined && !isDeviceIndex(frame.device)) {
        return { field: "device", reason: `${frame.device} is not a device index` }
      }
      return frame.payload.length > MaxControlPayloadBytes
        ? { field: "payload", reason: `${frame.payload.length} bytes, at most ${MaxControlPayloadBytes}` }
        : undefined
    case "StreamEnd":
      if (!isCount(frame.bytes)) return { field: "bytes", reason: `${frame.bytes} is not a byte count` }
      return isCount(frame.chunks) ? undefined : { field: "chunks", reason: `${frame.chunks} is not a chunk count` }
  }
}

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

const setU64 = (view: DataView, at: number, n: number): void => {
  view.setUint32(at, n % 0x1_0000_0000, true)
  view.setUint32(at + 4, Math.floor(n / 0x1_0000_0000), true)
}

const writeHeader = (view: DataView, type: number, length: number, bodyCrc: number, bytes: Uint8Array): void => {
  view.setUint8(0, type)
  view.setUint32(4, length, true)
  view.setUint32(8, bodyCrc, true)
  view.setUint32(12, crc32(bytes.subarray(0, 12)), true)
}

/** A frame in one buffer: `fill` writes the body at `FrameHeaderBytes`, then the header is sealed. */
const single = (
  type: number,
  length: number,
  fill: (view: DataView, at: number, bytes: Uint8Array) => void
): Uint8Array => {
  const bytes = new Uint8Array(FrameHeaderBytes + length)
  const view = viewOf(bytes)
  fill(view, FrameHeaderBytes, bytes)
  writeHeader(view, type, length, crc32(bytes.subarray(FrameHeaderBytes)), bytes)
  return bytes
}
