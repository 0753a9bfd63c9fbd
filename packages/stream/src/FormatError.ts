import { Data } from "effect"
import type { FrameType } from "./Frame.js"

/*
 * Every way a byte stream can fail to be a valid migration stream. `offset` is always the
 * absolute stream offset of the preamble or frame in which the problem was found (for
 * `Truncated`, where the input ended), so a saved stream can be inspected at that byte.
 */

/** The stream does not start with the magic `LOCKSTEP`. */
export class WrongMagic extends Data.TaggedError("WrongMagic")<{
  readonly offset: number
  /** The first bytes found, in hex. */
  readonly found: string
}> {
  override get message(): string {
    return `offset ${this.offset}: not a Lockstep stream (magic ${this.found}, expected 4c4f434b53544550 "LOCKSTEP")`
  }
}

/** The preamble names a format version this reader does not implement. */
export class UnsupportedVersion extends Data.TaggedError("UnsupportedVersion")<{
  readonly offset: number
  readonly version: number
  readonly supported: ReadonlyArray<number>
}> {
  override get message(): string {
    return `offset ${this.offset}: stream format version ${this.version} is not supported (supported: ${this.supported.join(", ")})`
  }
}

/** A CRC32 did not match: the preamble, a frame header or a frame body was corrupted. */
export class ChecksumMismatch extends Data.TaggedError("ChecksumMismatch")<{
  readonly offset: number
  readonly region: "preamble" | "header" | "body"
  /** The frame type, for a body. */
  readonly frameType: FrameType | undefined
  /** The CRC32 the bytes declare. */
  readonly expected: number
  /** The CRC32 of the bytes received. */
  readonly actual: number
}> {
  override get message(): string {
    const what = this.region === "body" ? `${this.frameType ?? "frame"} body` : `${this.region}`
    return `offset ${this.offset}: ${what} checksum mismatch (declared ${hex(this.expected)}, computed ${hex(this.actual)})`
  }
}

/** A frame header (with a valid checksum) names a frame type this version does not define. */
export class UnknownFrameType extends Data.TaggedError("UnknownFrameType")<{
  readonly offset: number
  readonly code: number
}> {
  override get message(): string {
    return `offset ${this.offset}: unknown frame type ${this.code}`
  }
}

/** A frame header declares a length over the configured maximum frame size. */
export class FrameTooLarge extends Data.TaggedError("FrameTooLarge")<{
  readonly offset: number
  readonly frameType: FrameType
  /** Header plus declared body length. */
  readonly length: number
  readonly max: number
}> {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame of ${this.length} bytes exceeds the maximum frame size ${this.max}`
  }
}

/** A frame's layout or contents break the format: a bad length, a reserved field set, an unknown code, … */
export class MalformedFrame extends Data.TaggedError("MalformedFrame")<{
  readonly offset: number
  readonly frameType: FrameType
  readonly field: string
  readonly reason: string
}> {
  override get message(): string {
    return `offset ${this.offset}: malformed ${this.frameType} frame, ${this.field}: ${this.reason}`
  }
}

/** A frame is not allowed where it is: data before the manifest, a second manifest, … */
export class FrameOutOfOrder extends Data.TaggedError("FrameOutOfOrder")<{
  readonly offset: number
  readonly frameType: FrameType
  readonly reason: string
}> {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame out of order: ${this.reason}`
  }
}

/** A frame names a device index the manifest does not have. */
export class UnknownDevice extends Data.TaggedError("UnknownDevice")<{
  readonly offset: number
  readonly frameType: FrameType
  readonly device: number
  /** How many devices the manifest lists. */
  readonly devices: number
}> {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame names device ${this.device}, but the manifest lists ${this.devices}`
  }
}

/** A chunk arrived for a device whose end marker was already seen. */
export class ChunkAfterDeviceEnd extends Data.TaggedError("ChunkAfterDeviceEnd")<{
  readonly offset: number
  readonly device: number
  readonly deviceId: string
}> {
  override get message(): string {
    return `offset ${this.offset}: chunk for device ${this.device} (${this.deviceId}) after its end marker`
  }
}

/** A second end marker for the same device. */
export class DuplicateDeviceEnd extends Data.TaggedError("DuplicateDeviceEnd")<{
  readonly offset: number
  readonly device: number
  readonly deviceId: string
}> {
  override get message(): string {
    return `offset ${this.offset}: second end marker for device ${this.device} (${this.deviceId})`
  }
}

/** A device end marker declares a byte total other than the sum of that device's chunks. */
export class DeviceTotalMismatch extends Data.TaggedError("DeviceTotalMismatch")<{
  readonly offset: number
  readonly device: number
  readonly deviceId: string
  readonly declared: number
  readonly received: number
}> {
  override get message(): string {
    return `offset ${this.offset}: device ${this.device} (${this.deviceId}) end marker declares ${this.declared} bytes, ${this.received} were received`
  }
}

/** The stream end came while some manifest devices had no end marker. */
export class DeviceNotEnded extends Data.TaggedError("DeviceNotEnded")<{
  readonly offset: number
  /** Ids of the devices without an end marker. */
  readonly deviceIds: ReadonlyArray<string>
}> {
  override get message(): string {
    return `offset ${this.offset}: stream end before the end marker of ${this.deviceIds.join(", ")}`
  }
}

/** The stream end's totals differ from what the stream carried. */
export class StreamTotalsMismatch extends Data.TaggedError("StreamTotalsMismatch")<{
  readonly offset: number
  readonly field: "bytes" | "chunks"
  readonly declared: number
  readonly counted: number
}> {
  override get message(): string {
    return `offset ${this.offset}: stream end declares ${this.declared} ${this.field}, the stream carried ${this.counted}`
  }
}

/** Bytes followed the stream end frame. */
export class DataAfterStreamEnd extends Data.TaggedError("DataAfterStreamEnd")<{
  readonly offset: number
  /** How many extra bytes were seen (at least this many). */
  readonly bytes: number
}> {
  override get message(): string {
    return `offset ${this.offset}: ${this.bytes} byte(s) after the stream end frame`
  }
}

/** The input ended before the stream end frame: inside the preamble, a header, a body, or between frames. */
export class Truncated extends Data.TaggedError("Truncated")<{
  /** Where the input ended. */
  readonly offset: number
  readonly inside: "preamble" | "header" | "body" | "stream"
  /** Bytes still missing from the unit being read (0 between frames). */
  readonly missing: number
}> {
  override get message(): string {
    return this.inside === "stream"
      ? `offset ${this.offset}: input ended before the stream end frame`
      : `offset ${this.offset}: input ended inside a ${this.inside}, ${this.missing} byte(s) missing`
  }
}

/** Every way a byte stream can fail to be a valid migration stream. */
export type FormatError =
  | WrongMagic
  | UnsupportedVersion
  | ChecksumMismatch
  | UnknownFrameType
  | FrameTooLarge
  | MalformedFrame
  | SequenceError
  | Truncated

/**
 * The errors a frame can cause by where it is rather than what it is. The writer refuses to
 * emit them for the same reasons the reader rejects them.
 */
export type SequenceError =
  | FrameOutOfOrder
  | UnknownDevice
  | ChunkAfterDeviceEnd
  | DuplicateDeviceEnd
  | DeviceTotalMismatch
  | DeviceNotEnded
  | StreamTotalsMismatch
  | DataAfterStreamEnd

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`
