import { resume } from "@lockstep/coordinator"
import { Cause, Effect, Exit, Option } from "effect"
import { type DestinationContext, nextMessageTagged } from "./DestinationContext.js"
import { transitionOptions } from "./GroupTransition.js"
import { ResumeIncomplete } from "./MigrationError.js"
import { roundMs } from "./SessionClock.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { type SessionMessage, send } from "./SessionMessage.js"

/**
 * Resume: STOP → quiesced → RUNNING in group order. Committed, the group is this side's to run:
 * a failed attempt rolls back to STOP (no reset) and is tried again; never resets a device. A
 * group that cannot resume is offered back to the source. Records the resume time in `ctx.s`.
 */
export const resumeCommitted = (ctx: DestinationContext): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { s, now } = ctx
    ctx.log.enter("resume")
    const resumeStart = now()
    yield* attempts(ctx)
    s.resumeMs = roundMs(now() - resumeStart)
    ctx.emit({ _tag: "Resumed", side: "destination", resumeMs: s.resumeMs, at: now() })
  })

/** Tries the resume up to `resumeAttempts` times, then gives the group back. */
const attempts = (ctx: DestinationContext): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { s, o, options } = ctx
    const attempts = Math.max(1, Math.floor(options.resumeAttempts ?? 3))
    let last: { readonly message: string } | undefined
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const tried = yield* Effect.exit(resume(ctx.runtime, transitionOptions(o, "destination", "resume", ctx.timings)))
      if (Exit.isSuccess(tried)) return
      const error = Cause.findErrorOption(tried.cause)
      if (Option.isNone(error)) return yield* locatedIn(ctx.log)(Effect.failCause(tried.cause))
      last = error.value
      if (attempt < attempts)
        ctx.emit({
          _tag: "Warning",
          side: "destination",
          reason: `resume attempt ${attempt} failed: ${last.message}; trying again`,
          at: ctx.now()
        })
    }
    const reason = last?.message ?? "the resume failed"
    s.givenBack = yield* giveBack(ctx, reason)
    return yield* faultIn(
      ctx.log,
      new ResumeIncomplete({ migration: s.migration ?? "", attempts, reason, givenBack: s.givenBack })
    )
  })

/**
 * Offers a committed group that cannot resume back to the source. It counts as given back only
 * once the source's journal records the renunciation (written here when this side can reach the
 * journal, or confirmed by the source's `Renounced`): until then the source must not run, and
 * this side keeps the state.
 */
const giveBack = (ctx: DestinationContext, reason: string): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    const migration = ctx.s.migration ?? ""
    const journal = ctx.options.decisionJournal
    const recorded = journal !== undefined && Exit.isSuccess(yield* Effect.exit(journal.renounce(migration, reason)))
    const writer = ctx.s.writer
    if (writer === undefined) return recorded
    const offer: SessionMessage = { _tag: "Aborted", phase: "resume", tag: "ResumeIncomplete", reason }
    const told = yield* Effect.exit(send(writer, offer))
    if (recorded || Exit.isFailure(told)) return recorded
    const renounced = yield* Effect.exit(nextMessageTagged(ctx, "Renounced"))
    return Exit.isSuccess(renounced) && renounced.value !== undefined
  })
