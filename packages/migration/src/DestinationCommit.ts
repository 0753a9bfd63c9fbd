import { stop } from "@lockstep/coordinator"
import type { FrameWriter } from "@lockstep/stream"
import { Cause, Effect, Exit, Option } from "effect"
import { type DestinationContext, messageOf, nextFrame, violation } from "./DestinationContext.js"
import { transitionOptions } from "./GroupTransition.js"
import { CommitInDoubt, PreparationFailed } from "./MigrationError.js"
import { roundMs } from "./SessionClock.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"

/** What validation and the vote need. */
export interface CommitInput {
  readonly writer: FrameWriter.FrameWriter
  readonly migration: string
}

/**
 * Validate and commit: RESUMING → STOP checks every device's data, then the caller's own
 * preparation; then the vote, and the wait for the decision: never resume without COMMIT. The
 * vote may reach the source even when its write fails (the channel can close right after taking
 * it), so from the first byte of the vote on, this side is in doubt until it learns the decision
 * (from the source, or from its journal). Succeeds only on COMMIT.
 */
export const validateAndCommit = (ctx: DestinationContext, input: CommitInput): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { s, o, options, now } = ctx
    const { writer, migration } = input
    const located = locatedIn(ctx.log)
    ctx.log.enter("validate")
    yield* located(send(writer, { _tag: "Busy", step: "validate", done: false }))
    const validateStart = now()
    yield* located(stop(ctx.runtime, transitionOptions(o, "destination", "validate", ctx.timings)))
    s.validateMs = roundMs(now() - validateStart)
    if (options.beforeVote !== undefined)
      yield* options.beforeVote.pipe(
        Effect.mapError((e) => faultIn(ctx.log, new PreparationFailed({ reason: e.message })))
      )

    ctx.log.enter("commit")
    s.voted = true
    const decision = yield* Effect.exit(
      located(send(writer, { _tag: "Prepared", validateMs: s.validateMs })).pipe(
        Effect.andThen(nextFrame(ctx, "the commit decision")),
        Effect.flatMap((frame) => messageOf(ctx, frame, "the commit decision"))
      )
    )
    if (Exit.isFailure(decision)) {
      const lost = Cause.findErrorOption(decision.cause)
      if (Option.isNone(lost) || lost.value.cause._tag === "PeerAborted") return yield* Effect.failCause(decision.cause)
      yield* decideFromJournal(ctx, migration, lost.value)
    } else if (decision.value._tag !== "Committed") {
      yield* decideFromJournal(ctx, migration, violation(ctx, "the commit decision", decision.value._tag))
    }
    s.decided = true
    s.committed = true
  })

/** The channel was lost after the vote: the source's journal decides, if this side can read it. */
export const decideFromJournal = (
  ctx: DestinationContext,
  migration: string,
  lost: SessionFault
): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const journal = ctx.options.decisionJournal
    if (journal === undefined)
      return yield* faultIn(
        ctx.log,
        new CommitInDoubt({ migration, reason: `${lost.cause.message}; no journal to read the decision from` })
      )
    const decided = yield* Effect.exit(
      journal.decide(migration, "abort", `the destination lost the source: ${lost.cause.message}`)
    )
    if (Exit.isFailure(decided)) {
      const why = Option.match(Cause.findErrorOption(decided.cause), {
        onNone: () => "the journal could not be read",
        onSome: (e) => e.message
      })
      return yield* faultIn(ctx.log, new CommitInDoubt({ migration, reason: `${lost.cause.message}; ${why}` }))
    }
    ctx.emit({ _tag: "DecisionRecorded", side: "destination", migration, decision: decided.value, at: ctx.now() })
    ctx.s.decided = true
    if (decided.value === "aborted") return yield* lost
    ctx.s.fromJournal = true
  })
