import type { FrameWriter } from "@lockstep/stream"
import { Effect, Exit } from "effect"
import { DecisionFenced } from "./MigrationError.js"
import { describeCause, faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"
import { type Confirmation, expect, type SourceContext } from "./SourceContext.js"

/** What the commit phase needs. */
export interface CommitInput {
  readonly writer: FrameWriter.FrameWriter
  readonly migration: string
}

/**
 * Validate (the destination's), commit, and resume (the destination's): COMMIT goes to the
 * journal before anyone is told, then the source waits for the destination's confirmation that
 * it runs, staying stopped. The stream ends only then, so that a destination that cannot resume
 * can still be told `Renounced`. Answers the confirmation.
 */
export const commit = (ctx: SourceContext, input: CommitInput): Effect.Effect<Confirmation, SessionFault> =>
  Effect.gen(function* () {
    const { s, o, now, emit, peer } = ctx
    const { writer, migration } = input
    const located = locatedIn(ctx.log)
    ctx.log.enter("validate")
    yield* expect(ctx, peer.prepared, "the destination's vote to commit")
    ctx.log.enter("commit")
    // The decision point: once begun, the journal write completes and its outcome is kept, even
    // if the destination vanishes meanwhile (a write abandoned half-way could land later).
    const decision = yield* located(
      Effect.uninterruptible(
        Effect.tap(o.journal.decide(migration, "commit"), (d) =>
          Effect.sync(() => {
            s.committed = d === "committed"
            s.decidedAt = now()
          })
        )
      )
    )
    emit({ _tag: "DecisionRecorded", side: "source", migration, decision, at: now() })
    if (decision === "aborted") return yield* faultIn(ctx.log, new DecisionFenced({ migration }))
    yield* located(send(writer, { _tag: "Committed" }))

    ctx.log.enter("resume")
    const confirmation = yield* expect(ctx, peer.resumed, "the destination's confirmation that it runs")
    const ended = yield* Effect.exit(writer.end)
    if (Exit.isFailure(ended))
      emit({
        _tag: "Warning",
        side: "source",
        reason: `the stream could not be ended: ${describeCause(ended.cause)}`,
        at: now()
      })
    return confirmation
  })
