import type { DeviceError } from "@lockstep/device"
import type { Arc, State } from "@lockstep/fsm"
import { Data } from "effect"

/** An arc did not complete within the per-arc timeout; it was interrupted. */
export class ArcTimedOut extends Data.TaggedError("ArcTimedOut")<{
  readonly device: string
  readonly arc: Arc
  readonly timeoutMs: number
}> {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} did not complete within ${this.timeoutMs} ms`
  }
}

/** The group transition was interrupted from outside (a cancelled migration, a shutdown). */
export class TransitionInterrupted extends Data.TaggedError("TransitionInterrupted") {
  override get message(): string {
    return "the group transition was interrupted"
  }
}

/** What first made a group transition fail. */
export type FailureCause = DeviceError | ArcTimedOut | TransitionInterrupted

/** How each device ended after a failed transition and its rollback. */
export type FinalStates = Readonly<Record<string, State | "UNKNOWN">>

/** A device's state could not be read before the transition; nothing was touched. */
export class StateUnreadable extends Data.TaggedError("StateUnreadable")<{
  readonly device: string
}> {
  override get message(): string {
    return `the state of ${this.device} could not be read`
  }
}
