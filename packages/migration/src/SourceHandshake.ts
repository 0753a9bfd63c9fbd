import { Migratability } from "@lockstep/coordinator"
import { FrameWriter, type ManifestDevice } from "@lockstep/stream"
import { Effect } from "effect"
import { unsettled } from "./Journal.js"
import { HandshakeRefused, NotMigratable } from "./MigrationError.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { deviceAt, expect, type SourceContext } from "./SourceContext.js"

/** What the handshake agreed. */
export interface Handshaken {
  readonly writer: FrameWriter.FrameWriter
  readonly migration: string
  /** How long the journal took to record the migration's start. */
  readonly journalMs: number
}

/**
 * Handshake: offers the manifest and records the destination's migration id in the journal.
 * Nothing is touched until the destination accepts and the journal knows; a migration the
 * journal has not settled is never followed by another (the destination is told why).
 */
export const handshake = (
  ctx: SourceContext,
  devices: ReadonlyArray<ManifestDevice>
): Effect.Effect<Handshaken, SessionFault> =>
  Effect.gen(function* () {
    const { o, s, now, runtime } = ctx
    const located = locatedIn(ctx.log)
    const report = Migratability.check(runtime.group)
    if (!report.migratable)
      return yield* faultIn(ctx.log, new NotMigratable({ side: "source", blockers: report.blockers }))
    for (let i = 0; i < ctx.ids.length; i++) deviceAt(ctx, i)
    const writer = yield* located(FrameWriter.make(ctx.link, { chunkBytes: o.chunkBytes }))
    s.writer = writer
    const previous = yield* located(unsettled(o.journal))
    if (previous !== undefined) return yield* faultIn(ctx.log, previous)
    const offeredAt = now()
    yield* located(writer.manifest(devices))
    const reply = yield* expect(ctx, ctx.peer.answer, "the destination's answer to the manifest")
    if (reply._tag === "Refused") return yield* faultIn(ctx.log, new HandshakeRefused({ refusals: reply.refusals }))
    // An upper bound of the round trip (it includes the destination's check of the manifest):
    // the rounds' probes soon give the real one.
    ctx.meter.recordRoundTrip(now() - offeredAt)
    const migration = reply.migration
    s.migration = migration
    const journalStart = now()
    yield* located(o.journal.begin(migration))
    s.begun = true
    const journalMs = now() - journalStart
    ctx.emit({ _tag: "HandshakeDone", side: "source", migration, at: now() })
    return { writer, migration, journalMs }
  })
