import { StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"

/** An errno-like code, e.g. `EINVAL`, `EIO`, `ETIMEDOUT`, `ECONNRESET`. */
export type ErrorCode = string

/** One arc as an error carries it. */
export const ArcSchema = Schema.Struct({ from: StateSchema, to: StateSchema })

/** The requested step is not one legal arc from the device's current state; nothing changed. */
export class ArcRejected extends Schema.TaggedError<ArcRejected>()("ArcRejected", {
  device: Schema.String,
  arc: ArcSchema,
  code: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} rejected (${this.code}): ${this.reason}`
  }
}

/** The device tried the arc and failed; `stateAfter` is the state read back afterwards. */
export class ArcFailed extends Schema.TaggedError<ArcFailed>()("ArcFailed", {
  device: Schema.String,
  arc: ArcSchema,
  code: Schema.String,
  reason: Schema.String,
  stateAfter: StateSchema
}) {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} failed (${this.code}): ${this.reason}; device left in ${this.stateAfter}`
  }
}

/** A data-session or query operation failed. */
export class SessionFailed extends Schema.TaggedError<SessionFailed>()("SessionFailed", {
  device: Schema.String,
  operation: Schema.Literals(["read", "write", "precopyInfo", "stopCopyLength", "getState", "enablePrecopyInfoV2"]),
  code: Schema.String,
  reason: Schema.String,
  state: StateSchema
}) {
  override get message(): string {
    return `${this.device}: ${this.operation} failed in ${this.state} (${this.code}): ${this.reason}`
  }
}

/** Reset failed; the device may be anywhere. */
export class ResetFailed extends Schema.TaggedError<ResetFailed>()("ResetFailed", {
  device: Schema.String,
  code: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.device}: reset failed (${this.code}): ${this.reason}`
  }
}

/** The backend cannot reach the device at all (a closed socket, a dead server); its state is unknown. */
export class DeviceUnreachable extends Schema.TaggedError<DeviceUnreachable>()("DeviceUnreachable", {
  device: Schema.String,
  operation: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.device}: unreachable during ${this.operation}: ${this.reason}`
  }
}

/** Every failure a `Device` reports, as a schema (it travels in a peer's abort). */
export const DeviceError = Schema.Union([ArcRejected, ArcFailed, SessionFailed, ResetFailed, DeviceUnreachable])

/** Every failure a `Device` reports. */
export type DeviceError = ArcRejected | ArcFailed | SessionFailed | ResetFailed | DeviceUnreachable
