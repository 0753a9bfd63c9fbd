import type { State } from "@lockstep/fsm"
import type { Group, GroupRuntime, Plan } from "@lockstep/group"
import type { Effect, Result } from "effect"
import { executePlanned, type TransitionOptions, type TransitionReport } from "./Executor.js"
import type { TransitionFailed, TransitionRefused } from "./ExecutorError.js"
import type { PlanError } from "./PlanError.js"
import { beginPrecopyPlan, enterStopCopyPlan, prepareResumePlan, quiescePlan, resumePlan, stopPlan } from "./Planner.js"

/** A named group step: plans from the devices' current states, then runs as one transaction. */
export type GroupStep = (
  runtime: GroupRuntime,
  options?: TransitionOptions
) => Effect.Effect<TransitionReport, TransitionRefused | TransitionFailed>

const step =
  (plan: (group: Group, from: Readonly<Record<string, State>>) => Result.Result<Plan, PlanError>): GroupStep =>
  (runtime, options) =>
    executePlanned(runtime, plan, options)

/** Every initiating device with P2P enters its quiescent state (RUNNING → RUNNING_P2P, PRE_COPY → PRE_COPY_P2P). */
export const quiesce: GroupStep = step(quiescePlan)
/** Every device to STOP, every initiator quiesced before anyone halts. */
export const stop: GroupStep = step(stopPlan)
/** Devices with PRE_COPY enter it (opening their saving sessions); the others stay RUNNING. */
export const beginPrecopy: GroupStep = step(beginPrecopyPlan)
/** The switchover: every device to STOP_COPY through the quiescent states. */
export const enterStopCopy: GroupStep = step(enterStopCopyPlan)
/** Destination: every device to RESUMING, ready to take a saved stream. */
export const prepareResume: GroupStep = step(prepareResumePlan)
/** Destination: RESUMING → STOP (validates) → quiesced → RUNNING, in group order. */
export const resume: GroupStep = step(resumePlan)
