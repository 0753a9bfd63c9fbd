import { Schema } from "effect"
import { FrameTypeSchema } from "./Frame.js"

/*
 * Every way a byte stream can fail to be a valid migration stream. `offset` is always the
 * absolute stream offset of the preamble or frame in which the problem was found (for
 * `Truncated`, where the input ended), so a saved stream can be inspected at that byte.
 */

/** The stream does not start with the magic `LOCKSTEP`. */
export class WrongMagic extends Schema.TaggedClass<WrongMagic>()("WrongMagic", {
  offset: Schema.Number,
  /** The first bytes found, in hex. */
  found: Schema.String
}) {
  get message(): string {
    return `offset ${this.offset}: not a Lockstep stream (magic ${this.found}, expected 4c4f434b53544550 "LOCKSTEP")`
  }
}

/** The preamble names a format version this reader does not implement. */
export class UnsupportedVersion extends Schema.TaggedClass<UnsupportedVersion>()("UnsupportedVersion", {
  offset: Schema.Number,
  version: Schema.Number,
  supported: Schema.Array(Schema.Number)
}) {
  get message(): string {
    return `offset ${this.offset}: stream format version ${this.version} is not supported (supported: ${this.supported.join(", ")})`
  }
}

/** A CRC32 did not match: the preamble, a frame header or a frame body was corrupted. */
export class ChecksumMismatch extends Schema.TaggedClass<ChecksumMismatch>()("ChecksumMismatch", {
  offset: Schema.Number,
  region: Schema.Literals(["preamble", "header", "body"]),
  /** The frame type, for a body. */
  frameType: Schema.UndefinedOr(FrameTypeSchema),
  /** The CRC32 the bytes declare. */
  expected: Schema.Number,
  /** The CRC32 of the bytes received. */
  actual: Schema.Number
}) {
  get message(): string {
    const what = this.region === "body" ? `${this.frameType ?? "frame"} body` : `${this.region}`
    return `offset ${this.offset}: ${what} checksum mismatch (declared ${hex(this.expected)}, computed ${hex(this.actual)})`
  }
}

/** A frame header (with a valid checksum) names a frame type this version does not define. */
export class UnknownFrameType extends Schema.TaggedClass<UnknownFrameType>()("UnknownFrameType", {
  offset: Schema.Number,
  code: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: unknown frame type ${this.code}`
  }
}

/** A frame header declares a length over the configured maximum frame size. */
export class FrameTooLarge extends Schema.TaggedClass<FrameTooLarge>()("FrameTooLarge", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  /** Header plus declared body length. */
  length: Schema.Number,
  max: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame of ${this.length} bytes exceeds the maximum frame size ${this.max}`
  }
}

/** A frame's layout or contents break the format: a bad length, a reserved field set, an unknown code, … */
export class MalformedFrame extends Schema.TaggedClass<MalformedFrame>()("MalformedFrame", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  field: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `offset ${this.offset}: malformed ${this.frameType} frame, ${this.field}: ${this.reason}`
  }
}

/** A frame is not allowed where it is: data before the manifest, a second manifest, … */
export class FrameOutOfOrder extends Schema.TaggedClass<FrameOutOfOrder>()("FrameOutOfOrder", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  reason: Schema.String
}) {
  get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame out of order: ${this.reason}`
  }
}

/** A frame names a device index the manifest does not have. */
export class UnknownDevice extends Schema.TaggedClass<UnknownDevice>()("UnknownDevice", {
  offset: Schema.Number,
  frameType: FrameTypeSchema,
  device: Schema.Number,
  /** How many devices the manifest lists. */
  devices: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: ${this.frameType} frame names device ${this.device}, but the manifest lists ${this.devices}`
  }
}

/** A chunk arrived for a device whose end marker was already seen. */
export class ChunkAfterDeviceEnd extends Schema.TaggedClass<ChunkAfterDeviceEnd>()("ChunkAfterDeviceEnd", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String
}) {
  get message(): string {
    return `offset ${this.offset}: chunk for device ${this.device} (${this.deviceId}) after its end marker`
  }
}

/** A second end marker for the same device. */
export class DuplicateDeviceEnd extends Schema.TaggedClass<DuplicateDeviceEnd>()("DuplicateDeviceEnd", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String
}) {
  get message(): string {
    return `offset ${this.offset}: second end marker for device ${this.device} (${this.deviceId})`
  }
}

/** A device end marker declares a byte total other than the sum of that device's chunks. */
export class DeviceTotalMismatch extends Schema.TaggedClass<DeviceTotalMismatch>()("DeviceTotalMismatch", {
  offset: Schema.Number,
  device: Schema.Number,
  deviceId: Schema.String,
  declared: Schema.Number,
  received: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: device ${this.device} (${this.deviceId}) end marker declares ${this.declared} bytes, ${this.received} were received`
  }
}

/** The stream end came while some manifest devices had no end marker. */
export class DeviceNotEnded extends Schema.TaggedClass<DeviceNotEnded>()("DeviceNotEnded", {
  offset: Schema.Number,
  /** Ids of the devices without an end marker. */
  deviceIds: Schema.Array(Schema.String)
}) {
  get message(): string {
    return `offset ${this.offset}: stream end before the end marker of ${this.deviceIds.join(", ")}`
  }
}

/** The stream end's totals differ from what the stream carried. */
export class StreamTotalsMismatch extends Schema.TaggedClass<StreamTotalsMismatch>()("StreamTotalsMismatch", {
  offset: Schema.Number,
  field: Schema.Literals(["bytes", "chunks"]),
  declared: Schema.Number,
  counted: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: stream end declares ${this.declared} ${this.field}, the stream carried ${this.counted}`
  }
}

/** Bytes followed the stream end frame. */
export class DataAfterStreamEnd extends Schema.TaggedClass<DataAfterStreamEnd>()("DataAfterStreamEnd", {
  offset: Schema.Number,
  /** How many extra bytes were seen (at least this many). */
  bytes: Schema.Number
}) {
  get message(): string {
    return `offset ${this.offset}: ${this.bytes} byte(s) after the stream end frame`
  }
}

/** The input ended before the stream end frame: inside the preamble, a header, a body, or between frames. */
export class Truncated extends Schema.TaggedClass<Truncated>()("Truncated", {
  /** Where the input ended. */
  offset: Schema.Number,
  inside: Schema.Literals(["preamble", "header", "body", "stream"]),
  /** Bytes still missing from the unit being read (0 between frames). */
  missing: Schema.Number
}) {
  get message(): string {
    return this.inside === "stream"
      ? `offset ${this.offset}: input ended before the stream end frame`
      : `offset ${this.offset}: input ended inside a ${this.inside}, ${this.missing} byte(s) missing`
  }
}

/**
 * The reasons a frame can cause by where it is rather than what it is. The writer refuses to
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

/** Why a byte stream is not a valid migration stream, as a schema (it travels in a peer's abort). */
export const FormatErrorReason = Schema.Union([
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

/** Why a byte stream is not a valid migration stream. */
export type FormatErrorReason = typeof FormatErrorReason.Type

/**
 * Every way a byte stream can fail to be a valid migration stream; `reason` says which
 * (`Effect.catchReason("FormatError", "Truncated", …)` handles one). Every reason carries the
 * stream `offset` at which it was found.
 */
export class FormatError extends Schema.TaggedError<FormatError>()("FormatError", {
  reason: FormatErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  /** The absolute stream offset of the preamble or frame at fault (for `Truncated`, where the input ended). */
  get offset(): number {
    return this.reason.offset
  }

  static wrongMagic(fields: ConstructorParameters<typeof WrongMagic>[0]): FormatError {
    return new FormatError({ reason: new WrongMagic(fields) })
  }

  static unsupportedVersion(fields: ConstructorParameters<typeof UnsupportedVersion>[0]): FormatError {
    return new FormatError({ reason: new UnsupportedVersion(fields) })
  }

  static checksumMismatch(fields: ConstructorParameters<typeof ChecksumMismatch>[0]): FormatError {
    return new FormatError({ reason: new ChecksumMismatch(fields) })
  }

  static unknownFrameType(fields: ConstructorParameters<typeof UnknownFrameType>[0]): FormatError {
    return new FormatError({ reason: new UnknownFrameType(fields) })
  }

  static frameTooLarge(fields: ConstructorParameters<typeof FrameTooLarge>[0]): FormatError {
    return new FormatError({ reason: new FrameTooLarge(fields) })
  }

  static malformedFrame(fields: ConstructorParameters<typeof MalformedFrame>[0]): FormatError {
    return new FormatError({ reason: new MalformedFrame(fields) })
  }

  static frameOutOfOrder(fields: ConstructorParameters<typeof FrameOutOfOrder>[0]): FormatError {
    return new FormatError({ reason: new FrameOutOfOrder(fields) })
  }

  static unknownDevice(fields: ConstructorParameters<typeof UnknownDevice>[0]): FormatError {
    return new FormatError({ reason: new UnknownDevice(fields) })
  }

  static chunkAfterDeviceEnd(fields: ConstructorParameters<typeof ChunkAfterDeviceEnd>[0]): FormatError {
    return new FormatError({ reason: new ChunkAfterDeviceEnd(fields) })
  }

  static duplicateDeviceEnd(fields: ConstructorParameters<typeof DuplicateDeviceEnd>[0]): FormatError {
    return new FormatError({ reason: new DuplicateDeviceEnd(fields) })
  }

  static deviceTotalMismatch(fields: ConstructorParameters<typeof DeviceTotalMismatch>[0]): FormatError {
    return new FormatError({ reason: new DeviceTotalMismatch(fields) })
  }

  static deviceNotEnded(fields: ConstructorParameters<typeof DeviceNotEnded>[0]): FormatError {
    return new FormatError({ reason: new DeviceNotEnded(fields) })
  }

  static streamTotalsMismatch(fields: ConstructorParameters<typeof StreamTotalsMismatch>[0]): FormatError {
    return new FormatError({ reason: new StreamTotalsMismatch(fields) })
  }

  static dataAfterStreamEnd(fields: ConstructorParameters<typeof DataAfterStreamEnd>[0]): FormatError {
    return new FormatError({ reason: new DataAfterStreamEnd(fields) })
  }

  static truncated(fields: ConstructorParameters<typeof Truncated>[0]): FormatError {
    return new FormatError({ reason: new Truncated(fields) })
  }
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`
