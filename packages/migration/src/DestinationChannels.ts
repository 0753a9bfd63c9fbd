import { FrameReader, type Manifest, type Transport, type TransportError } from "@lockstep/stream"
import { Effect, Result, type Scope } from "effect"
import { carriedBy } from "./Channels.js"
import { type DestinationContext, nextFrameOf } from "./DestinationContext.js"
import { ChannelRefused, ChannelsUnavailable } from "./MigrationError.js"
import { channelsFrom } from "./MigrationTransport.js"
import { faultIn, locatedIn, type SessionFault, withinPeerTimeout } from "./SessionFault.js"
import { decodeMessage } from "./SessionMessage.js"

/** One extra channel, joined: its reader, past its manifest and `Joined`. */
export interface JoinedChannel {
  readonly channel: number
  readonly transport: Transport
  readonly reader: FrameReader.FrameReader
}

/**
 * Accepts the source's `count − 1` extra channels (announced on channel 0 by `Channels`), each
 * checked before any of its data is read: the migration's id, a channel announced and not yet
 * joined, and a manifest naming exactly the devices that channel carries. Anything else is a
 * stranger: it is closed and the session fails (`ChannelRefused`), as a channel-0 stranger fails
 * the handshake. The connections close with the scope. Answers the channels in channel order.
 */
export const joinChannels = (
  ctx: DestinationContext,
  count: number,
  manifest: Manifest
): Effect.Effect<ReadonlyArray<JoinedChannel>, SessionFault, Scope.Scope> =>
  Effect.gen(function* () {
    const max = Math.max(1, Math.floor(ctx.options.maxChannels ?? 16))
    if (count > max)
      return yield* faultIn(
        ctx.log,
        new ChannelRefused({ reason: `the source asks for ${count} channels, at most ${max}` })
      )
    const accept = yield* channelsFrom(ctx.options.acceptChannel)
    if (accept === undefined)
      return yield* faultIn(ctx.log, new ChannelsUnavailable({ side: "destination", channels: count }))
    const joined: Array<JoinedChannel> = []
    for (let k = 1; k < count; k++) {
      const channel = yield* joinOne(ctx, accept, count, manifest, joined).pipe(
        withinPeerTimeout(ctx.log, ctx.o.peerTimeoutMs, `extra channel ${k} of ${count - 1}`)
      )
      joined.push(channel)
    }
    return joined.sort((a, b) => a.channel - b.channel)
  })

/** The next connection, joined, or refused (and closed). */
const joinOne = (
  ctx: DestinationContext,
  accept: Effect.Effect<Transport, TransportError, Scope.Scope>,
  count: number,
  manifest: Manifest,
  joined: ReadonlyArray<JoinedChannel>
): Effect.Effect<JoinedChannel, SessionFault, Scope.Scope> =>
  Effect.gen(function* () {
    const located = locatedIn(ctx.log)
    const transport = yield* located(accept)
    const reader = yield* located(FrameReader.make(transport))
    const next = (what: string) => nextFrameOf(ctx, reader, what)
    const refuse = (reason: string) =>
      Effect.andThen(transport.close, Effect.fail(faultIn(ctx.log, new ChannelRefused({ reason }))))
    const offered = yield* next("an extra channel's manifest")
    if (offered._tag !== "Manifest") return yield* refuse(`it began with a ${offered._tag} frame, not a manifest`)
    const hello = yield* next("the extra channel's Joined message")
    const decoded = hello._tag === "Control" ? decodeMessage(hello) : Result.fail(`a ${hello._tag} frame`)
    if (Result.isFailure(decoded)) return yield* refuse(`it did not say which channel it is (${decoded.failure})`)
    const message = decoded.success
    if (message._tag !== "Joined") return yield* refuse(`it said ${message._tag}, not which channel it is`)
    if (message.migration !== ctx.s.migration)
      return yield* refuse(`it belongs to migration ${message.migration}, not ${ctx.s.migration ?? "?"}`)
    const { channel } = message
    if (channel >= count || joined.some((j) => j.channel === channel))
      return yield* refuse(`channel ${channel} is not one of the ${count - 1} extra channels still expected`)
    const expected = carriedBy(channel, count, manifest.devices.length).map((i) => manifest.devices[i]?.id)
    const named = offered.devices.map((d) => d.id)
    if (named.join("\n") !== expected.join("\n"))
      return yield* refuse(`channel ${channel} names ${named.join(", ")}, but carries ${expected.join(", ")}`)
    return { channel, transport, reader }
  })
