import { reportedStates } from "@lockstep/coordinator"
import { Effect, Exit } from "effect"
import { type DestinationContext, readToEnd } from "./DestinationContext.js"
import type { DestinationSummary, DeviceTotals } from "./Events.js"
import { roundMs } from "./SessionClock.js"
import { describeCause } from "./SessionFault.js"
import { send } from "./SessionMessage.js"

/** After RUNNING: confirm, end this direction, read the source's stream end, and summarise. */
export const finish = (ctx: DestinationContext): Effect.Effect<DestinationSummary> =>
  Effect.gen(function* () {
    const { s, now, emit } = ctx
    const warn = (reason: string) => emit({ _tag: "Warning", side: "destination", reason, at: now() })
    const writer = s.writer
    if (writer !== undefined) {
      const confirmed = yield* Effect.exit(
        send(writer, { _tag: "Resumed", resumeMs: s.resumeMs }).pipe(Effect.andThen(writer.end))
      )
      if (Exit.isFailure(confirmed))
        warn(`the source could not be told that the group runs: ${describeCause(confirmed.cause)}`)
    }
    if (!s.fromJournal) {
      const rest = yield* Effect.exit(readToEnd(ctx))
      if (Exit.isFailure(rest)) warn(`the source's stream did not end cleanly: ${describeCause(rest.cause)}`)
    }
    yield* ctx.transport.close
    ctx.log.end()
    const summary: DestinationSummary = {
      side: "destination",
      migration: s.migration ?? "",
      bytes: s.bytes,
      devices: Object.fromEntries(
        ctx.ids.map((id): [string, DeviceTotals] => [id, s.totals.get(id) ?? { precopyBytes: 0, stopCopyBytes: 0 }])
      ),
      phases: ctx.log.durations,
      totalMs: roundMs(now() - ctx.startedAt),
      states: yield* reportedStates(ctx.runtime),
      validateMs: s.validateMs,
      resumeMs: s.resumeMs,
      decidedFromJournal: s.fromJournal
    }
    emit({ _tag: "Completed", summary, at: now() })
    return summary
  })
