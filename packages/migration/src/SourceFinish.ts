import { reportedStates } from "@lockstep/coordinator"
import { Effect, Exit, type Fiber } from "effect"
import { measuredDowntime } from "./Estimate.js"
import type { DeviceTotals, SourceSummary, SwitchoverDecision } from "./Events.js"
import { roundMs } from "./SessionClock.js"
import { describeCause } from "./SessionFault.js"
import { type Confirmation, hangUp, type SentTotals, type SourceContext } from "./SourceContext.js"

/**
 * The end of a committed migration: the journal told it is complete (when confirmed), the
 * channel closed, and the summary, confirmed (with the destination's resume) or not.
 */
export const finish = (
  ctx: SourceContext,
  listener: Fiber.Fiber<void>,
  confirmation: Confirmation | undefined
): Effect.Effect<SourceSummary> =>
  Effect.gen(function* () {
    const { s, o, now, emit } = ctx
    const migration = s.migration ?? ""
    if (confirmation !== undefined) {
      const completed = yield* Effect.exit(o.journal.complete(migration))
      if (Exit.isFailure(completed))
        emit({ _tag: "Warning", side: "source", reason: `journal: ${describeCause(completed.cause)}`, at: now() })
    } else {
      emit({
        _tag: "Warning",
        side: "source",
        reason: `migration ${migration} is committed but the destination did not confirm that it runs; the source stays stopped`,
        at: now()
      })
    }
    yield* hangUp(ctx, listener)
    const states = yield* reportedStates(ctx.runtime)
    const decidedAt = s.decidedAt ?? now()
    // From the decision to the confirmation: COMMIT crossed the channel, the destination resumed,
    // the confirmation crossed back; the crossings are the same empty channel, half each.
    if (confirmation !== undefined) ctx.meter.recordRoundTrip(confirmation.at - decidedAt - confirmation.resumeMs)
    const downtime =
      confirmation === undefined
        ? undefined
        : measuredDowntime({ switchoverAt: s.switchoverAt ?? decidedAt, decidedAt, confirmation })
    const summary = summarise(
      ctx,
      confirmation !== undefined,
      downtime === undefined ? undefined : roundMs(downtime),
      states
    )
    emit({ _tag: "Completed", summary, at: now() })
    return summary
  })

/** The summary of a committed migration, from what its phases recorded. */
const summarise = (
  ctx: SourceContext,
  confirmed: boolean,
  downtimeMs: number | undefined,
  states: SourceSummary["states"]
): SourceSummary => {
  const { s, o, ids, totals } = ctx
  const decision: SwitchoverDecision = {
    reason: s.reason,
    why: s.why,
    rounds: s.rounds,
    estimateMs: s.estimate?.totalMs,
    downtimeLimitMs: o.downtimeLimitMs,
    remainingBytes: ctx.progress.history,
    deliveredBytesPerSecond: ctx.meter.rate,
    dirtyBytesPerSecond: ctx.progress.dirtyRate,
    roundTripMs: ctx.meter.roundTripMs
  }
  return {
    side: "source",
    migration: s.migration ?? "",
    bytes: totals.reduce((n, t) => n + t.precopyBytes + t.stopCopyBytes, 0),
    devices: Object.fromEntries(ids.map((id, i): [string, DeviceTotals] => [id, totalsOf(totals[i])])),
    phases: ctx.log.durations,
    totalMs: roundMs(ctx.now() - ctx.startedAt),
    states,
    rounds: s.rounds,
    switchover: s.reason,
    decision,
    estimate: s.estimate,
    downtimeMs,
    downtimeLimitMs: o.downtimeLimitMs,
    downtimeLimitMissedByMs:
      downtimeMs !== undefined && downtimeMs > o.downtimeLimitMs ? roundMs(downtimeMs - o.downtimeLimitMs) : undefined,
    switchoverCriticalPathMs: roundMs(s.switchoverCriticalPathMs),
    assumedStopCopyLengths: ctx.stopCopyLengths.assumed,
    reinitialised: s.reinits.map((r) => ({
      device: ids[r.device] ?? "?",
      round: r.round,
      initialBytes: r.initialBytes
    })),
    switchoversWithdrawn: s.withdrawn,
    confirmed
  }
}

const totalsOf = (t: SentTotals | undefined): DeviceTotals => ({
  precopyBytes: t?.precopyBytes ?? 0,
  stopCopyBytes: t?.stopCopyBytes ?? 0
})
