import { planTransition, prepareResume } from "@lockstep/coordinator"
import type { FrameWriter } from "@lockstep/stream"
import { Effect, Result } from "effect"
import type { DestinationContext } from "./DestinationContext.js"
import { criticalPathMs } from "./Estimate.js"
import { transitionOptions } from "./GroupTransition.js"
import { locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"

/**
 * Prepare: every device to RESUMING. Slow arcs may outlast the source's peer timeout: the source
 * is told this side is busy, so that it can tell a busy destination from a silent one. Answers
 * the estimate of the resume (RESUMING → RUNNING's critical path), which the acks carry.
 */
export const prepare = (
  ctx: DestinationContext,
  writer: FrameWriter.FrameWriter
): Effect.Effect<number, SessionFault> =>
  Effect.gen(function* () {
    const located = locatedIn(ctx.log)
    ctx.log.enter("prepare")
    yield* located(send(writer, { _tag: "Busy", step: "prepare", done: false }))
    yield* located(prepareResume(ctx.runtime, transitionOptions(ctx.o, "destination", "prepareResume", ctx.timings)))
    yield* located(send(writer, { _tag: "Busy", step: "prepare", done: true }))
    const resumePath = planTransition(ctx.runtime.group, { from: "RESUMING", to: "RUNNING" })
    return Result.isSuccess(resumePath)
      ? criticalPathMs(resumePath.success, (device, arc) => ctx.timings.latency(device, arc))
      : 0
  })
