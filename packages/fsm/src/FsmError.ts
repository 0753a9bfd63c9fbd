import { Schema } from "effect"
import { FlagsSchema } from "./Flags.js"
import { StateSchema } from "./State.js"

/** The device does not advertise STOP_COPY, which every migratable device must. */
export class MissingStopCopy extends Schema.TaggedClass<MissingStopCopy>()("MissingStopCopy", {
  flags: FlagsSchema
}) {
  get message(): string {
    return "the device does not support STOP_COPY, which migration requires"
  }
}

/** ERROR was requested; it can only be entered through a failure. */
export class ErrorRequested extends Schema.TaggedClass<ErrorRequested>()("ErrorRequested", {
  from: StateSchema
}) {
  get message(): string {
    return `ERROR cannot be requested (from ${this.from}); a device enters it only by failing`
  }
}

/** A transition was requested from ERROR; only a reset leaves ERROR. */
export class FromError extends Schema.TaggedClass<FromError>()("FromError", {
  to: StateSchema
}) {
  get message(): string {
    return `the device is in ERROR and cannot move to ${this.to}; only a reset leaves ERROR`
  }
}

/** The source or target state needs a capability the device does not advertise. */
export class UnsupportedState extends Schema.TaggedClass<UnsupportedState>()("UnsupportedState", {
  state: StateSchema,
  role: Schema.Literals(["from", "to"]),
  flags: FlagsSchema
}) {
  get message(): string {
    return `${this.state} (as the ${this.role === "from" ? "source" : "target"} state) is not supported by a device with these migration flags`
  }
}

/**
 * STOP_COPY → PRE_COPY and STOP_COPY → PRE_COPY_P2P: the uAPI blocks re-entering pre-copy
 * once stop-copy has begun (a path would have to close and reopen the saving session).
 */
export class BlockedTransition extends Schema.TaggedClass<BlockedTransition>()("BlockedTransition", {
  from: StateSchema,
  to: StateSchema
}) {
  get message(): string {
    return `${this.from} → ${this.to} is blocked by the uAPI: pre-copy cannot be re-entered once stop-copy has begun`
  }
}

/** Why a single-device transition request is refused, as a schema (it travels in a peer's abort). */
export const FsmErrorReason = Schema.Union([
  MissingStopCopy,
  ErrorRequested,
  FromError,
  UnsupportedState,
  BlockedTransition
])

/** Why a single-device transition request is refused. */
export type FsmErrorReason = MissingStopCopy | ErrorRequested | FromError | UnsupportedState | BlockedTransition

/** A single-device transition request refused by the kernel's rule; `reason` says which way. */
export class FsmError extends Schema.TaggedError<FsmError>()("FsmError", {
  reason: FsmErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}
