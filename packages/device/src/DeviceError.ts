import type { Arc, State } from "@lockstep/fsm"
import { Data } from "effect"

/** An errno-like code, e.g. `EINVAL`, `EIO`, `ETIMEDOUT`, `ECONNRESET`. */
export type ErrorCode = string

/** The requested step is not one legal arc from the device's current state; nothing changed. */
export class ArcRejected extends Data.TaggedError("ArcRejected")<{
  readonly device: string
  readonly arc: Arc
  readonly code: ErrorCode
  readonly reason: string
}> {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} rejected (${this.code}): ${this.reason}`
  }
}

/** The device tried the arc and failed; `stateAfter` is the state read back afterwards. */
export class ArcFailed extends Data.TaggedError("ArcFailed")<{
  readonly device: string
  readonly arc: Arc
  readonly code: ErrorCode
  readonly reason: string
  readonly stateAfter: State
}> {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} failed (${this.code}): ${this.reason}; device left in ${this.stateAfter}`
  }
}

/** A data-session or query operation failed. */
export class SessionFailed extends Data.TaggedError("SessionFailed")<{
  readonly device: string
  readonly operation: "read" | "write" | "precopyInfo" | "stopCopyLength" | "getState" | "enablePrecopyInfoV2"
  readonly code: ErrorCode
  readonly reason: string
  readonly state: State
}> {
  override get message(): string {
    return `${this.device}: ${this.operation} failed in ${this.state} (${this.code}): ${this.reason}`
  }
}

/** Reset failed; the device may be anywhere. */
export class ResetFailed extends Data.TaggedError("ResetFailed")<{
  readonly device: string
  readonly code: ErrorCode
  readonly reason: string
}> {
  override get message(): string {
    return `${this.device}: reset failed (${this.code}): ${this.reason}`
  }
}

/** The backend cannot reach the device at all (a closed socket, a dead server); its state is unknown. */
export class DeviceUnreachable extends Data.TaggedError("DeviceUnreachable")<{
  readonly device: string
  readonly operation: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.device}: unreachable during ${this.operation}: ${this.reason}`
  }
}

/** Every failure a `Device` reports. */
export type DeviceError = ArcRejected | ArcFailed | SessionFailed | ResetFailed | DeviceUnreachable
