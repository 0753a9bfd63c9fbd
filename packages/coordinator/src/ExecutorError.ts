import { ArcSchema, DeviceError } from "@lockstep/device"
import { StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"
import { PlanError } from "./PlanError.js"

/** An arc did not complete within the per-arc timeout; it was interrupted. */
export class ArcTimedOut extends Schema.TaggedError<ArcTimedOut>()("ArcTimedOut", {
  device: Schema.String,
  arc: ArcSchema,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `${this.device}: ${this.arc.from} → ${this.arc.to} did not complete within ${this.timeoutMs} ms`
  }
}

/** The group transition was interrupted from outside (a cancelled migration, a shutdown). */
export class TransitionInterrupted extends Schema.TaggedError<TransitionInterrupted>()("TransitionInterrupted", {}) {
  override get message(): string {
    return "the group transition was interrupted"
  }
}

/** What first made a group transition fail, as a schema (it travels in a peer's abort). */
export const FailureCause = Schema.Union([DeviceError, ArcTimedOut, TransitionInterrupted])

/** What first made a group transition fail. */
export type FailureCause = DeviceError | ArcTimedOut | TransitionInterrupted

/** A device's state as a failed transition leaves it: `UNKNOWN` where it cannot be read. */
const FinalState = Schema.Union([StateSchema, Schema.Literal("UNKNOWN")])

/** How each device ended after a failed transition and its rollback. */
export const FinalStates = Schema.Record(Schema.String, FinalState)

/** How each device ended after a failed transition and its rollback. */
export type FinalStates = typeof FinalStates.Type

/** A device's state could not be read before the transition; nothing was touched. */
export class StateUnreadable extends Schema.TaggedError<StateUnreadable>()("StateUnreadable", {
  device: Schema.String
}) {
  override get message(): string {
    return `the state of ${this.device} could not be read`
  }
}

/** The transition could not start: nothing was touched. */
export class TransitionRefused extends Schema.TaggedError<TransitionRefused>()("TransitionRefused", {
  cause: Schema.Union([PlanError, StateUnreadable])
}) {
  override get message(): string {
    return `the group transition was refused before any device was touched: ${this.cause.message}`
  }
}

/**
 * A group transition failed and was rolled back. Names the first cause (with its device and
 * arc), how every device ended, whether the group is back where it started, and which devices
 * were left in ERROR under the quarantine policy.
 */
export class TransitionFailed extends Schema.TaggedError<TransitionFailed>()("TransitionFailed", {
  cause: FailureCause,
  device: Schema.optional(Schema.String),
  arc: Schema.optional(ArcSchema),
  startStates: Schema.Record(Schema.String, StateSchema),
  finalStates: FinalStates,
  /**
   * Every device not quarantined is back in its starting state (or the nearest one the kernel
   * allows, see `rollbackTarget`); a device reset under the `reset` policy is in RUNNING.
   */
  rolledBack: Schema.Boolean,
  quarantined: Schema.Array(Schema.String),
  /**
   * Devices kept quiesced (RUNNING_P2P or PRE_COPY_P2P) instead of going back to an initiating
   * state, because they may write into a device that may be halted and cannot be read.
   */
  held: Schema.Array(Schema.String),
  /** A failure of the rollback itself, if it had one. */
  rollbackCause: Schema.optional(Schema.Union([FailureCause, PlanError]))
}) {
  override get message(): string {
    const where = this.arc === undefined ? "" : ` (${this.device}: ${this.arc.from} → ${this.arc.to})`
    const states = Object.entries(this.finalStates)
      .map(([id, s]) => `${id}=${s}`)
      .join(", ")
    const outcome = this.rolledBack ? "the group was rolled back" : "the rollback did not complete"
    const held =
      this.held.length === 0
        ? ""
        : `; ${this.held.join(", ")} held quiesced: they may write into a device that may be halted and cannot be read`
    return `group transition failed${where}: ${this.cause.message}; ${outcome}; devices now ${states}${held}`
  }
}

/** Every way a group transition fails: refused before anything moved, or failed and rolled back. */
export type ExecutorError = TransitionRefused | TransitionFailed
