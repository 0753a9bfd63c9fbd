import { FsmError, StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"

/** A state assignment names a device that is not in the group. */
export class DeviceNotInGroup extends Schema.TaggedClass<DeviceNotInGroup>()("DeviceNotInGroup", {
  device: Schema.String,
  role: Schema.Literals(["from", "to"])
}) {
  get message(): string {
    return `the ${this.role === "from" ? "current" : "target"} states name ${JSON.stringify(this.device)}, which is not in the group`
  }
}

/** The kernel refuses one device's transition; `cause` says why. */
export class PathRefused extends Schema.TaggedClass<PathRefused>()("PathRefused", {
  device: Schema.String,
  from: StateSchema,
  to: StateSchema,
  cause: FsmError
}) {
  get message(): string {
    return `${this.device}: cannot go ${this.from} → ${this.to}: ${this.cause.message}`
  }
}

/**
 * An edge breaks the invariant before the plan starts or after it ends, so no ordering can
 * make the transition safe: the initiator is initiating while the target is halted.
 */
export class UnsafeEdge extends Schema.TaggedClass<UnsafeEdge>()("UnsafeEdge", {
  edge: Schema.Tuple([Schema.String, Schema.String]),
  moment: Schema.Literals(["before", "after"]),
  initiatorState: StateSchema,
  targetState: StateSchema,
  /** Whether the initiator has no arc in this plan. */
  initiatorStays: Schema.Boolean
}) {
  get message(): string {
    const [a, b] = this.edge
    return this.moment === "before"
      ? `edge ${a} → ${b} is already unsafe: ${a} is ${this.initiatorState} (initiating) and may write into ${b}, which is ${this.targetState} (halted)`
      : `edge ${a} → ${b}: ${a} ${this.initiatorStays ? "stays" : "would end"} in ${this.initiatorState} (initiating) and could write into ${b} in ${this.targetState} (halted); ${a} must be quiesced or halted first`
  }
}

/** One arc in a dependency cycle. */
export const CycleArc = Schema.Struct({ device: Schema.String, from: StateSchema, to: StateSchema })

/** One arc in a dependency cycle. */
export type CycleArc = typeof CycleArc.Type

/**
 * The ordering the invariant demands is circular: each arc in `cycle` must wait for the next,
 * and the last for the first. This happens when devices without P2P write into each other
 * (each must stop writing before the other halts, and stopping is one RUNNING → STOP arc).
 */
export class DependencyCycle extends Schema.TaggedClass<DependencyCycle>()("DependencyCycle", {
  cycle: Schema.Array(CycleArc)
}) {
  get message(): string {
    const steps = this.cycle.map((a) => `${a.device} ${a.from} → ${a.to}`)
    const first = steps[0] ?? ""
    return `no safe order exists: ${[...steps, first].join(" waits for ")}; devices that write into each other need P2P (a quiescent state) to stop one after the other`
  }
}

/** Why planning a group transition fails, as a schema (it travels in a peer's abort). */
export const PlanErrorReason = Schema.Union([DeviceNotInGroup, PathRefused, UnsafeEdge, DependencyCycle])

/** Why planning a group transition fails. */
export type PlanErrorReason = DeviceNotInGroup | PathRefused | UnsafeEdge | DependencyCycle

/** Planning a group transition failed; `reason` says why. Nothing was touched. */
export class PlanError extends Schema.TaggedError<PlanError>()("PlanError", {
  reason: PlanErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}
