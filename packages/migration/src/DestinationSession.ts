import type { GroupRuntime } from "@lockstep/coordinator"
import type { Transport } from "@lockstep/stream"
import { Effect } from "effect"
import { abort } from "./DestinationAbort.js"
import { validateAndCommit } from "./DestinationCommit.js"
import { makeDestinationContext } from "./DestinationContext.js"
import { finish } from "./DestinationFinish.js"
import { handshake } from "./DestinationHandshake.js"
import { load } from "./DestinationLoad.js"
import { prepare } from "./DestinationPrepare.js"
import { resumeCommitted } from "./DestinationResume.js"
import type { DestinationSummary } from "./Events.js"
import { watchTouched } from "./GroupTransition.js"
import type { MigrationFailed } from "./MigrationError.js"
import { type DestinationOptions, fromContext, resolveSession } from "./Options.js"
import { recovering } from "./RecoveryGuard.js"
import { clockNow } from "./SessionClock.js"
import type { SessionFault } from "./SessionFault.js"

/**
 * The destination side of a migration: checks the source's manifest against `runtime`'s group
 * before touching any device, takes every device to RESUMING, writes the stream into them
 * (each device by its own writer, so a slow device slows the channel, never a buffer), validates
 * (→ STOP), votes to commit, and resumes (→ RUNNING, in group order) only once the source has
 * journalled COMMIT. The session owns the transport and closes it when done.
 *
 * On any failure before it runs, the devices it touched are reset and parked in STOP, the source
 * is told why, and the session fails with one `MigrationFailed`. Lost after its vote, it asks
 * `decisionJournal` (fencing an undecided migration with ABORT), or fails with `CommitInDoubt`
 * leaving the devices validated in STOP.
 *
 * The phases, each in its module: `DestinationHandshake`, `DestinationPrepare`,
 * `DestinationLoad` (pre-copy and drain), `DestinationCommit` (validate and vote),
 * `DestinationResume`, `DestinationFinish`, and `DestinationAbort` on failure.
 */
export const migrateDestination: (
  runtime: GroupRuntime,
  transport: Transport,
  options?: DestinationOptions
) => Effect.Effect<DestinationSummary, MigrationFailed> = Effect.fn("Migration.destination")(function* (
  runtime: GroupRuntime,
  transport: Transport,
  options: DestinationOptions = {}
) {
  const given = yield* fromContext(options, "decisionJournal")
  const watch = watchTouched(given)
  const o = resolveSession(watch.options)
  const now = yield* clockNow
  const ctx = yield* makeDestinationContext(runtime, transport, o, given, now, watch.touched)

  const phases: Effect.Effect<DestinationSummary, SessionFault> = Effect.gen(function* () {
    const { manifest, writer, migration } = yield* handshake(ctx)
    const resumeEstimateMs = yield* prepare(ctx, writer)
    yield* load(ctx, { manifest, writer, resumeEstimateMs })
    yield* validateAndCommit(ctx, { writer, migration })
    yield* resumeCommitted(ctx)
    return yield* finish(ctx)
  }).pipe(Effect.scoped)

  return yield* recovering(phases, (cause) => abort(ctx, cause))
})
