import { Data } from "effect"

/** Which way a message travels: a command (to the server) or a reply (to the client). */
export type Direction = "command" | "reply"

/**
 * A header declares a message size outside the accepted bounds (below the 16-byte header,
 * or above the frame limit). Framing is lost: the connection cannot continue.
 */
export class FrameSizeInvalid extends Data.TaggedError("FrameSizeInvalid")<{
  readonly command: string
  readonly msgId: number
  readonly field: "size"
  readonly value: number
  readonly min: number
  readonly max: number
}> {
  override get message(): string {
    return `${this.command} (msg_id ${this.msgId}): message size ${this.value} is outside ${this.min}..${this.max}`
  }
}

/** The stream ended in the middle of a message. */
export class TruncatedFrame extends Data.TaggedError("TruncatedFrame")<{
  readonly command: string
  readonly field: "size"
  /** The size the header declared (16 if the header itself was cut). */
  readonly value: number
  /** The bytes that arrived before the end. */
  readonly received: number
}> {
  override get message(): string {
    return `${this.command}: the stream ended after ${this.received} of ${this.value} bytes`
  }
}

/** The command number is not a vfio-user command. */
export class UnknownCommand extends Data.TaggedError("UnknownCommand")<{
  readonly command: string
  readonly msgId: number
  readonly direction: Direction
  readonly field: "command"
  readonly value: number
}> {
  override get message(): string {
    return `msg_id ${this.msgId}: unknown ${this.direction}, command = ${this.value}`
  }
}

/**
 * A vfio-user command (or DEVICE_FEATURE feature/operation) this package does not carry, e.g.
 * DMA_MAP or SET_IRQS. The message is well framed; a server answers it with an error.
 */
export class UnsupportedCommand extends Data.TaggedError("UnsupportedCommand")<{
  readonly command: string
  readonly msgId: number
  readonly direction: Direction
  readonly field: "command" | "flags"
  readonly value: number
}> {
  override get message(): string {
    return `${this.command} (msg_id ${this.msgId}): ${this.field} = ${this.value} is not supported`
  }
}

/**
 * A field of a well-framed message (header or payload) has a value the protocol does not
 * allow, or the payload has the wrong size for its command (`field` is then `"payload"`).
 */
export class FieldInvalid extends Data.TaggedError("FieldInvalid")<{
  readonly command: string
  readonly msgId: number
  readonly direction: Direction
  readonly field: string
  readonly value: number | bigint | string
  readonly expected: string
}> {
  override get message(): string {
    return `${this.command} ${this.direction} (msg_id ${this.msgId}): ${this.field} = ${String(this.value)}, expected ${this.expected}`
  }
}

/** A reply does not answer the command it was received for (wrong msg_id, command, feature or count). */
export class ReplyMismatch extends Data.TaggedError("ReplyMismatch")<{
  readonly command: string
  readonly msgId: number
  readonly field: string
  readonly value: number | bigint | string
  readonly expected: number | bigint | string
}> {
  override get message(): string {
    return `reply to ${this.command} (msg_id ${this.msgId}): ${this.field} = ${String(this.value)}, expected ${String(this.expected)}`
  }
}

/** Every way bytes from a peer can break the protocol. */
export type ProtocolError =
  | FrameSizeInvalid
  | TruncatedFrame
  | UnknownCommand
  | UnsupportedCommand
  | FieldInvalid
  | ReplyMismatch
