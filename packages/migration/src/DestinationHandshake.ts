import { FrameWriter, type Manifest } from "@lockstep/stream"
import { Effect } from "effect"
import { type DestinationContext, messageOf, nextFrame, violation } from "./DestinationContext.js"
import { checkManifest } from "./Handshake.js"
import { newMigrationId } from "./Journal.js"
import { HandshakeRefused } from "./MigrationError.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"

/** What the handshake agreed. */
export interface Handshaken {
  readonly manifest: Manifest
  readonly writer: FrameWriter.FrameWriter
  readonly migration: string
}

/** Handshake: the source's manifest checked before anything is touched, then accepted or refused. */
export const handshake = (ctx: DestinationContext): Effect.Effect<Handshaken, SessionFault> =>
  Effect.gen(function* () {
    const { s } = ctx
    const located = locatedIn(ctx.log)
    const first = yield* nextFrame(ctx, "the manifest")
    if (first._tag !== "Manifest") {
      yield* messageOf(ctx, first, "the manifest")
      return yield* violation(ctx, "the manifest", `a ${first._tag} frame`)
    }
    const manifest: Manifest = first
    const writer = yield* located(FrameWriter.make(ctx.link, { peerManifest: manifest }))
    s.writer = writer
    const refusals = yield* checkManifest(manifest, ctx.runtime, ctx.o.compatibility)
    if (refusals.length > 0) {
      yield* located(send(writer, { _tag: "Refused", refusals }))
      return yield* faultIn(ctx.log, new HandshakeRefused({ refusals }))
    }
    const migration = (ctx.options.migrationId ?? newMigrationId)()
    s.migration = migration
    yield* located(send(writer, { _tag: "Accepted", migration }))
    ctx.emit({ _tag: "HandshakeDone", side: "destination", migration, at: ctx.now() })
    return { manifest, writer, migration }
  })
