import { FrameWriter, type ManifestDevice, type Transport, type TransportError, withTimeouts } from "@lockstep/stream"
import { Effect, type Scope } from "effect"
import { carriedBy, channelOf, indexOnChannel } from "./Channels.js"
import { ChannelsUnavailable } from "./MigrationError.js"
import { channelsFrom } from "./MigrationTransport.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"
import type { SourceContext } from "./SourceContext.js"

/** Where one device's frames go: its channel's writer, and its index in that channel's manifest. */
export interface Route {
  readonly writer: FrameWriter.FrameWriter
  readonly index: number
}

/** The channels of a migration, as the source writes them (see `Channels.ts` for the rule). */
export interface Lanes {
  /** Each channel's writer; channel 0's is the session's. */
  readonly writers: ReadonlyArray<FrameWriter.FrameWriter>
  readonly route: (i: number) => Route
  /** Ends every extra channel's stream: after the drain, when all their devices have ended. */
  readonly end: Effect.Effect<void, FrameWriter.FrameWriteError>
}

/** How the source opens its extra channels: undefined with one channel; without a way, the session fails before the handshake. */
export const channelOpener = (
  ctx: SourceContext
): Effect.Effect<Effect.Effect<Transport, TransportError, Scope.Scope> | undefined, SessionFault> =>
  Effect.gen(function* () {
    if (ctx.o.channels === 1) return undefined
    const open = yield* channelsFrom(ctx.o.openChannel)
    if (open === undefined)
      return yield* faultIn(ctx.log, new ChannelsUnavailable({ side: "source", channels: ctx.o.channels }))
    return open
  })

/**
 * Sets up the channels once the handshake is accepted: with one, channel 0 alone and nothing
 * sent. With N, the count announced on channel 0 and the devices it does not carry closed there
 * (empty end markers), then each extra connection opened (by `open`, see {@link channelOpener})
 * with its manifest and `Joined`. The connections close with the scope.
 */
export const openLanes = (
  ctx: SourceContext,
  open: Effect.Effect<Transport, TransportError, Scope.Scope> | undefined,
  writer: FrameWriter.FrameWriter,
  migration: string,
  devices: ReadonlyArray<ManifestDevice>
): Effect.Effect<Lanes, SessionFault, Scope.Scope> =>
  Effect.gen(function* () {
    // A channel with no device would have an empty manifest, which the format does not admit.
    const n = Math.min(ctx.o.channels, devices.length)
    if (n <= 1 || open === undefined)
      return { writers: [writer], route: (index) => ({ writer, index }), end: Effect.void }
    const located = locatedIn(ctx.log)
    yield* located(send(writer, { _tag: "Channels", count: n }))
    for (let i = 0; i < devices.length; i++) if (channelOf(i, n) !== 0) yield* located(writer.endDevice(i))
    const extra: Array<FrameWriter.FrameWriter> = []
    for (let channel = 1; channel < n; channel++) {
      const link = withTimeouts(yield* located(open), { write: ctx.o.peerTimeoutMs })
      const lane = yield* located(FrameWriter.make(link, { chunkBytes: ctx.o.chunkBytes }))
      yield* located(lane.manifest(carriedBy(channel, n, devices.length).flatMap((i) => devices[i] ?? [])))
      yield* located(send(lane, { _tag: "Joined", migration, channel }))
      extra.push(lane)
    }
    const writers = [writer, ...extra]
    return {
      writers,
      route: (i) => ({ writer: writers[channelOf(i, n)] ?? writer, index: indexOnChannel(i, n) }),
      end: Effect.forEach(extra, (lane) => lane.end, { discard: true })
    }
  })
