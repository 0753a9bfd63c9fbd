import { Schema } from "effect"
import { FrameTypeSchema } from "./Frame.js"

/*
 * Every way a byte stream can fail to be a valid migration stream. `offset` is always the
 * absolute stream offset of the preamble or frame in which the problem was found (for
 * `Truncated`, where the input ended), so a saved stream can be inspected at that byte.
 */

/** The stream does not start with the magic `LOCKSTEP`. */
export class WrongMagic extends Schema.TaggedError<WrongMagic>()("WrongMagic", {
  offset: Schema.Number,
  /** The first bytes found, in hex. */
  found: Schema.String
}) {
  override get message(): string {
    return `offset ${this.offset}: not a Lockstep stream (magic ${this.found}, expected 4c4f434b53544550 "LOCKSTEP")`
  }
}

/** The preamble names a format version this reader does not implement. */
export class UnsupportedVersion extends Schema.TaggedError<UnsupportedVersion>()("UnsupportedVersion", {
  offset: Schema.Number,
  version: Schema.Number,
  supported: Schema.Array(Schema.Number)
}) {
  override get message(): string {
    return `offset ${this.offset}: stream format version ${this.version} is not supported (supported: ${this.supported.join(", ")})`
  }
}

/** A CRC32 did not match: the preamble, a frame header or a frame body was corrupted. */
export class ChecksumMismatch extends Schema.TaggedError<ChecksumMismatch>()("ChecksumMismatch", {
  offset: Schema.Number,
  region: Schema.Literals(["preamble", "header", "body"]),
  /** The frame type, for a body. */
  frameType: Schema.UndefinedOr(FrameTypeSchema),
  /** The CRC32 the bytes declare. */
  expected: Schema.Number,
  /** The CRC32 of the bytes received. */
  actual: Schema.Number
}) {
  override get message(): string {
    const what = this.region === "body" ? `${this.frameType ?? "frame"} body` : `${this.region}`
    return `offset ${this.offset}: ${what} checksum mismatch (declared ${hex(this.expected)}, computed ${hex(this.actual)})`
  }
}

/** A frame header (with a valid checksum) names a frame type this version does not define. */
export class UnknownFrameType extends Schema.TaggedError<UnknownFrameType>()("UnknownFrameType", {
  offset: Schema.Number,
  code: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: unknown frame type ${this.code}`
  }
}

/** A frame header declares a length over the configured maximum frame size. */
export class FrameTooLarge extends Schema.TaggedError<FrameTooLarge>()("FrameTooLarge", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  /** Header plus declared body length. */
  length: Schema.Number,
  max: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame of ${this.length} bytes exceeds the maximum frame size ${this.max}`
  }
}

/** A frame's layout or contents break the format: a bad length, a reserved field set, an unknown code, … */
export class MalformedFrame extends Schema.TaggedError<MalformedFrame>()("MalformedFrame", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  field: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `offset ${this.offset}: malformed ${this.frameType} frame, ${this.field}: ${this.reason}`
  }
}

/** A frame is not allowed where it is: data before the manifest, a second manifest, … */
export class FrameOutOfOrder extends Schema.TaggedError<FrameOutOfOrder>()("FrameOutOfOrder", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  reason: Schema.String
}) {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame out of order: ${this.reason}`
  }
}

/** A frame names a device index the manifest does not have. */
export class UnknownDevice extends Schema.TaggedError<UnknownDevice>()("UnknownDevice", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  device: Schema.Number,
  /** How many devices the manifest lists. */
  devices: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame names device ${this.device}, but the manifest lists ${this.devices}`
  }
}

/** A chunk arrived for a device whose end marker was already seen. */
export class ChunkAfterDeviceEnd extends Schema.TaggedError<ChunkAfterDeviceEnd>()("ChunkAfterDeviceEnd", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String
}) {
  override get message(): string {
    return `offset ${this.offset}: chunk for device ${this.device} (${this.deviceId}) after its end marker`
  }
}

/** A second end marker for the same device. */
export class DuplicateDeviceEnd extends Schema.TaggedError<DuplicateDeviceEnd>()("DuplicateDeviceEnd", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String
}) {
  override get message(): string {
    return `offset ${this.offset}: second end marker for device ${this.device} (${this.deviceId})`
  }
}

/** A device end marker declares a byte total other than the sum of that device's chunks. */
export class DeviceTotalMismatch extends Schema.TaggedError<DeviceTotalMismatch>()("DeviceTotalMismatch", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String,
  declared: Schema.Number,
  received: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: device ${this.device} (${this.deviceId}) end marker declares ${this.declared} bytes, ${this.received} were received`
  }
}

/** The stream end came while some manifest devices had no end marker. */
export class DeviceNotEnded extends Schema.TaggedError<DeviceNotEnded>()("DeviceNotEnded", {
  offset: Schema.Number,
  /** Ids of the devices without an end marker. */
  deviceIds: Schema.Array(Schema.String)
}) {
  override get message(): string {
    return `offset ${this.offset}: stream end before the end marker of ${this.deviceIds.join(", ")}`
  }
}

/** The stream end's totals differ from what the stream carried. */
export class StreamTotalsMismatch extends Schema.TaggedError<StreamTotalsMismatch>()("StreamTotalsMismatch", {
  offset: Schema.Number,
  field: Schema.Literals(["bytes", "chunks"]),
  declared: Schema.Number,
  counted: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: stream end declares ${this.declared} ${this.field}, the stream carried ${this.counted}`
  }
}

/** Bytes followed the stream end frame. */
export class DataAfterStreamEnd extends Schema.TaggedError<DataAfterStreamEnd>()("DataAfterStreamEnd", {
  offset: Schema.Number,
  /** How many extra bytes were seen (at least this many). */
  bytes: Schema.Number
}) {
  override get message(): string {
    return `offset ${this.offset}: ${this.bytes} byte(s) after the stream end frame`
  }
}

/** The input ended before the stream end frame: inside the preamble, a header, a body, or between frames. */
export class Truncated extends Schema.TaggedError<Truncated>()("Truncated", {
  /** Where the input ended. */
  offset: Schema.Number,
  inside: Schema.Literals(["preamble", "header", "body", "stream"]),
  /** Bytes still missing from the unit being read (0 between frames). */
  missing: Schema.Number
}) {
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

/** Every format error, as a schema: they travel in a peer's abort and come back as the same classes. */
export const FormatErrorSchema = Schema.Union([
  WrongMagic,
  UnsupportedVersion,
  ChecksumMismatch,
  UnknownFrameType,
  FrameTooLarge,
  MalformedFrame,
  FrameOutOfOrder,
  UnknownDevice,
  ChunkAfterDeviceEnd,
  DuplicateDeviceEnd,
  DeviceTotalMismatch,
  DeviceNotEnded,
  StreamTotalsMismatch,
  DataAfterStreamEnd,
  Truncated
])

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`
