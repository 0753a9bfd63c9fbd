import { Schema } from "effect"

/** Which way a message travels: a command (to the server) or a reply (to the client). */
export const Direction = Schema.Literals(["command", "reply"])

/** Which way a message travels: a command (to the server) or a reply (to the client). */
export type Direction = typeof Direction.Type

/** A field's value as an error carries it. */
const FieldValue = Schema.Union([Schema.Number, Schema.BigInt, Schema.String])

/**
 * A header declares a message size outside the accepted bounds (below the 16-byte header,
 * or above the frame limit). Framing is lost: the connection cannot continue.
 */
export class FrameSizeInvalid extends Schema.TaggedClass<FrameSizeInvalid>()("FrameSizeInvalid", {
  command: Schema.String,
  msgId: Schema.Number,
  field: Schema.Literal("size"),
  value: Schema.Number,
  min: Schema.Number,
  max: Schema.Number
}) {
  get message(): string {
    return `${this.command} (msg_id ${this.msgId}): message size ${this.value} is outside ${this.min}..${this.max}`
  }
}

/** The stream ended in the middle of a message. */
export class TruncatedFrame extends Schema.TaggedClass<TruncatedFrame>()("TruncatedFrame", {
  command: Schema.String,
  field: Schema.Literal("size"),
  /** The size the header declared (16 if the header itself was cut). */
  value: Schema.Number,
  /** The bytes that arrived before the end. */
  received: Schema.Number
}) {
  get message(): string {
    return `${this.command}: the stream ended after ${this.received} of ${this.value} bytes`
  }
}

/** The command number is not a vfio-user command. */
export class UnknownCommand extends Schema.TaggedClass<UnknownCommand>()("UnknownCommand", {
  command: Schema.String,
  msgId: Schema.Number,
  direction: Direction,
  field: Schema.Literal("command"),
  value: Schema.Number
}) {
  get message(): string {
    return `msg_id ${this.msgId}: unknown ${this.direction}, command = ${this.value}`
  }
}

/**
 * A vfio-user command (or DEVICE_FEATURE feature/operation) this package does not carry, e.g.
 * DMA_MAP or SET_IRQS. The message is well framed; a server answers it with an error.
 */
export class UnsupportedCommand extends Schema.TaggedClass<UnsupportedCommand>()("UnsupportedCommand", {
  command: Schema.String,
  msgId: Schema.Number,
  direction: Direction,
  field: Schema.Literals(["command", "flags"]),
  value: Schema.Number
}) {
  get message(): string {
    return `${this.command} (msg_id ${this.msgId}): ${this.field} = ${this.value} is not supported`
  }
}

/**
 * A field of a well-framed message (header or payload) has a value the protocol does not
 * allow, or the payload has the wrong size for its command (`field` is then `"payload"`).
 */
export class FieldInvalid extends Schema.TaggedClass<FieldInvalid>()("FieldInvalid", {
  command: Schema.String,
  msgId: Schema.Number,
  direction: Direction,
  field: Schema.String,
  value: FieldValue,
  expected: Schema.String
}) {
  get message(): string {
    return `${this.command} ${this.direction} (msg_id ${this.msgId}): ${this.field} = ${String(this.value)}, expected ${this.expected}`
  }
}

/** A reply does not answer the command it was received for (wrong msg_id, command, feature or count). */
export class ReplyMismatch extends Schema.TaggedClass<ReplyMismatch>()("ReplyMismatch", {
  command: Schema.String,
  msgId: Schema.Number,
  field: Schema.String,
  value: FieldValue,
  expected: FieldValue
}) {
  get message(): string {
    return `reply to ${this.command} (msg_id ${this.msgId}): ${this.field} = ${String(this.value)}, expected ${String(this.expected)}`
  }
}

/** How bytes from a peer broke the protocol, as a schema. */
export const ProtocolErrorReason = Schema.Union([
  FrameSizeInvalid,
  TruncatedFrame,
  UnknownCommand,
  UnsupportedCommand,
  FieldInvalid,
  ReplyMismatch
])

/** How bytes from a peer broke the protocol. */
export type ProtocolErrorReason =
  | FrameSizeInvalid
  | TruncatedFrame
  | UnknownCommand
  | UnsupportedCommand
  | FieldInvalid
  | ReplyMismatch

/**
 * Every way bytes from a peer can break the protocol; `reason` says which
 * (`Effect.catchReason("ProtocolError", "ReplyMismatch", …)` handles one).
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  reason: ProtocolErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  static frameSizeInvalid(fields: ConstructorParameters<typeof FrameSizeInvalid>[0]): ProtocolError {
    return new ProtocolError({ reason: new FrameSizeInvalid(fields) })
  }

  static truncatedFrame(fields: ConstructorParameters<typeof TruncatedFrame>[0]): ProtocolError {
    return new ProtocolError({ reason: new TruncatedFrame(fields) })
  }

  static unknownCommand(fields: ConstructorParameters<typeof UnknownCommand>[0]): ProtocolError {
    return new ProtocolError({ reason: new UnknownCommand(fields) })
  }

  static unsupportedCommand(fields: ConstructorParameters<typeof UnsupportedCommand>[0]): ProtocolError {
    return new ProtocolError({ reason: new UnsupportedCommand(fields) })
  }

  static fieldInvalid(fields: ConstructorParameters<typeof FieldInvalid>[0]): ProtocolError {
    return new ProtocolError({ reason: new FieldInvalid(fields) })
  }

  static replyMismatch(fields: ConstructorParameters<typeof ReplyMismatch>[0]): ProtocolError {
    return new ProtocolError({ reason: new ReplyMismatch(fields) })
  }
}
