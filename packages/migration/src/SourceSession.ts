import type { GroupRuntime } from "@lockstep/coordinator"
import { FrameReader, type Manifest, type Transport, withTimeouts } from "@lockstep/stream"
import { Deferred, Effect } from "effect"
import { throttle } from "./Bandwidth.js"
import type { SourceSummary } from "./Events.js"
import { watchTouched } from "./GroupTransition.js"
import { manifestOf } from "./Handshake.js"
import type { MigrationFailed } from "./MigrationError.js"
import { fromContext, resolveSource, type SourceOptions } from "./Options.js"
import { recovering } from "./RecoveryGuard.js"
import { clockNow } from "./SessionClock.js"
import { faultIn, type SessionFault } from "./SessionFault.js"
import { abort } from "./SourceAbort.js"
import { channelOpener, openLanes } from "./SourceChannels.js"
import { commit } from "./SourceCommit.js"
import { makeSourceContext, type SourceContext } from "./SourceContext.js"
import { finish } from "./SourceFinish.js"
import { handshake } from "./SourceHandshake.js"
import { listen } from "./SourceListener.js"
import { precopy } from "./SourcePrecopy.js"
import { prepare } from "./SourcePrepare.js"
import { switchover } from "./SourceSwitchover.js"

/**
 * The source side of a migration: offers `runtime`'s group over `transport`, pre-copies while
 * the group runs, switches over, drains, and commits through the journal. The session owns the
 * transport and closes it when done.
 *
 * On success the source group stays stopped (STOP_COPY): the destination owns it. On any
 * failure before COMMIT is journalled (and after it, if the destination renounces a failed
 * resume) the group is rolled back to RUNNING, the destination is told why, and the session
 * fails with one `MigrationFailed`. If the channel is lost after COMMIT, the migration stands:
 * the summary says the destination did not confirm.
 *
 * The phases, each in its module: `SourceHandshake`, `SourcePrepare`, `SourcePrecopy`,
 * `SourceSwitchover` (switchover and drain), `SourceCommit` (validate, commit, resume),
 * `SourceFinish`, and `SourceAbort` on failure; `SourceListener` hears the destination meanwhile.
 */
export const migrateSource: (
  runtime: GroupRuntime,
  transport: Transport,
  options?: SourceOptions
) => Effect.Effect<SourceSummary, MigrationFailed> = Effect.fn("Migration.source")(function* (
  runtime: GroupRuntime,
  transport: Transport,
  options: SourceOptions = {}
) {
  const watch = watchTouched(yield* fromContext(options, "journal"))
  const o = resolveSource(watch.options)
  const now = yield* clockNow
  const link = withTimeouts(transport, { write: o.peerTimeoutMs })
  const ctx = yield* makeSourceContext(runtime, transport, link, o, now, watch.touched)

  // The listener outlives the phases: a failing source still hears the destination hang up.
  const devices = yield* manifestOf(runtime, o.compatibility)
  const manifest: Manifest = { _tag: "Manifest", devices }
  const listener = yield* Effect.forkChild(listen(ctx, yield* FrameReader.make(link, { peerManifest: manifest })))

  const phases: Effect.Effect<SourceSummary, SessionFault> = Effect.gen(function* () {
    const open = yield* channelOpener(ctx)
    const { writer, migration, journalMs } = yield* handshake(ctx, devices)
    const lanes = yield* openLanes(ctx, open, writer, migration, devices)
    const { precopyDevices, states } = yield* prepare(ctx)
    const pace = throttle(o.bandwidthLimit)
    yield* precopy(ctx, { writer, lanes, journalMs, precopyDevices, states, pace })
    yield* switchover(ctx, { lanes, precopyDevices, pace })
    const confirmation = yield* commit(ctx, { writer, migration })
    return yield* finish(ctx, listener, confirmation)
  }).pipe(Effect.scoped)

  return yield* recovering(Effect.raceFirst(phases, peerFailure(ctx)), (cause) => abort(ctx, listener, cause))
})

/** The destination's abort, or its stream's failure, as the source's fault. */
const peerFailure = (ctx: SourceContext): Effect.Effect<never, SessionFault> =>
  Effect.mapError(Deferred.await(ctx.peer.failure), (cause) => faultIn(ctx.log, cause))
