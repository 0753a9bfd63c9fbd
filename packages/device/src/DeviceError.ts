import { StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"

/** An errno-like code, e.g. `EINVAL`, `EIO`, `ETIMEDOUT`, `ECONNRESET`. */
export type ErrorCode = string

/** One arc as an error carries it. */
export const ArcSchema = Schema.Struct({ from: StateSchema, to: StateSchema })

/** The requested step is not one legal arc from the device's current state; nothing changed. */
export class ArcRejected extends Schema.TaggedClass<ArcRejected>()("ArcRejected", {
  device: Schema.String,
  arc: ArcSchema,
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} rejected (${this.code}): ${this.reason}`
  }
}

/** The device tried the arc and failed; `stateAfter` is the state read back afterwards. */
export class ArcFailed extends Schema.TaggedClass<ArcFailed>()("ArcFailed", {
  device: Schema.String,
  arc: ArcSchema,
  code: Schema.String,
  reason: Schema.String,
  stateAfter: StateSchema
}) {
  get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} failed (${this.code}): ${this.reason}; device left in ${this.stateAfter}`
  }
}

/** The operations a `SessionFailed` names. */
export const SessionOperation = Schema.Literals([
  "read",
  "write",
  "precopyInfo",
  "stopCopyLength",
  "getState",
  "enablePrecopyInfoV2"
])

/** A data-session or query operation of the `Device` port. */
export type SessionOperation = typeof SessionOperation.Type

/** A data-session or query operation failed. */
export class SessionFailed extends Schema.TaggedClass<SessionFailed>()("SessionFailed", {
  device: Schema.String,
  operation: SessionOperation,
  code: Schema.String,
  reason: Schema.String,
  state: StateSchema
}) {
  get message(): string {
    return `${this.device}: ${this.operation} failed in ${this.state} (${this.code}): ${this.reason}`
  }
}

/** Reset failed; the device may be anywhere. */
export class ResetFailed extends Schema.TaggedClass<ResetFailed>()("ResetFailed", {
  device: Schema.String,
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.device}: reset failed (${this.code}): ${this.reason}`
  }
}

/** The backend cannot reach the device at all (a closed socket, a dead server); its state is unknown. */
export class DeviceUnreachable extends Schema.TaggedClass<DeviceUnreachable>()("DeviceUnreachable", {
  device: Schema.String,
  operation: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.device}: unreachable during ${this.operation}: ${this.reason}`
  }
}

/** Why a `Device` operation failed, as a schema (it travels in a peer's abort and the events file). */
export const DeviceErrorReason = Schema.Union([ArcRejected, ArcFailed, SessionFailed, ResetFailed, DeviceUnreachable])

/** Why a `Device` operation failed. */
export type DeviceErrorReason = ArcRejected | ArcFailed | SessionFailed | ResetFailed | DeviceUnreachable

/**
 * Every failure a `Device` reports; `reason` says which (`Effect.catchReason("DeviceError",
 * "SessionFailed", …)` handles one). Each reason names its device.
 */
export class DeviceError extends Schema.TaggedError<DeviceError>()("DeviceError", {
  reason: DeviceErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  /** The device that failed. */
  get device(): string {
    return this.reason.device
  }

  static arcRejected(fields: ConstructorParameters<typeof ArcRejected>[0]): DeviceError {
    return new DeviceError({ reason: new ArcRejected(fields) })
  }

  static arcFailed(fields: ConstructorParameters<typeof ArcFailed>[0]): DeviceError {
    return new DeviceError({ reason: new ArcFailed(fields) })
  }

  static sessionFailed(fields: ConstructorParameters<typeof SessionFailed>[0]): DeviceError {
    return new DeviceError({ reason: new SessionFailed(fields) })
  }

  static resetFailed(fields: ConstructorParameters<typeof ResetFailed>[0]): DeviceError {
    return new DeviceError({ reason: new ResetFailed(fields) })
  }

  static unreachable(fields: ConstructorParameters<typeof DeviceUnreachable>[0]): DeviceError {
    return new DeviceError({ reason: new DeviceUnreachable(fields) })
  }
}
