import { Data } from "effect"
import type { Flags } from "./Flags.js"
import type { State } from "./State.js"

/** The device does not advertise STOP_COPY, which every migratable device must. */
export class MissingStopCopy extends Data.TaggedError("MissingStopCopy")<{
  readonly flags: Flags
}> {
  override get message(): string {
    return "the device does not support STOP_COPY, which migration requires"
  }
}

/** ERROR was requested; it can only be entered through a failure. */
export class ErrorRequested extends Data.TaggedError("ErrorRequested")<{
  readonly from: State
}> {
  override get message(): string {
    return `ERROR cannot be requested (from ${this.from}); a device enters it only by failing`
  }
}

/** A transition was requested from ERROR; only a reset leaves ERROR. */
export class FromError extends Data.TaggedError("FromError")<{
  readonly to: State
}> {
  override get message(): string {
    return `the device is in ERROR and cannot move to ${this.to}; only a reset leaves ERROR`
  }
}

/** The source or target state needs a capability the device does not advertise. */
export class UnsupportedState extends Data.TaggedError("UnsupportedState")<{
  readonly state: State
  readonly role: "from" | "to"
  readonly flags: Flags
}> {
  override get message(): string {
    return `${this.state} (as the ${this.role === "from" ? "source" : "target"} state) is not supported by a device with these migration flags`
  }
}

/**
 * STOP_COPY → PRE_COPY and STOP_COPY → PRE_COPY_P2P: the uAPI blocks re-entering pre-copy
 * once stop-copy has begun (a path would have to close and reopen the saving session).
 */
export class BlockedTransition extends Data.TaggedError("BlockedTransition")<{
  readonly from: State
  readonly to: State
}> {
  override get message(): string {
    return `${this.from} → ${this.to} is blocked by the uAPI: pre-copy cannot be re-entered once stop-copy has begun`
  }
}

/** Every way a single-device transition request can be refused. */
export type FsmError = MissingStopCopy | ErrorRequested | FromError | UnsupportedState | BlockedTransition
