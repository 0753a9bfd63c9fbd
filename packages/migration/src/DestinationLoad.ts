import type { Frame, FrameWriter, Manifest } from "@lockstep/stream"
import { Effect, Option, Result, type Scope } from "effect"
import { type JoinedChannel, joinChannels } from "./DestinationChannels.js"
import { type DestinationContext, messageOf, nextFrame, nextFrameOf, violation } from "./DestinationContext.js"
import { loadDevices, manifestDevices } from "./Loading.js"
import { locatedIn, type SessionFault, withinPeerTimeout } from "./SessionFault.js"
import { decodeMessage, send } from "./SessionMessage.js"

/** What the load needs. */
export interface LoadInput {
  readonly manifest: Manifest
  readonly writer: FrameWriter.FrameWriter
  /** The resume estimate each acknowledgement carries. */
  readonly resumeEstimateMs: number
}

/**
 * Pre-copy and drain, as the destination sees them: every device written concurrently, in stream
 * order per device (the loader `restoreGroup` shares, {@link loadDevices}); probes answered at
 * once, initial data acknowledged, and `SwitchoverBegun` starts the drain. With several channels
 * (announced first on channel 0), every channel is joined before any data is read, all are read
 * at once, and each extra one is read to its end. Records the totals in `ctx.s`.
 */
export const load = (ctx: DestinationContext, input: LoadInput): Effect.Effect<void, SessionFault, Scope.Scope> =>
  Effect.gen(function* () {
    const { s, o, options } = ctx
    const { manifest, writer } = input
    const located = locatedIn(ctx.log)
    ctx.log.enter("precopy")
    const devices = manifestDevices(manifest, ctx.runtime)
    const first = yield* nextFrame(ctx, "device data")
    const count = announcedChannels(first)
    const extra = count === undefined ? [] : yield* joinChannels(ctx, count, manifest)
    // The frame read to look for the announcement is the loader's first, unless it was one.
    let pending = count === undefined ? Option.some(first) : Option.none<Frame>()
    const channelZero = Effect.suspend(() => {
      if (Option.isNone(pending)) return nextFrame(ctx, "device data")
      const frame = pending.value
      pending = Option.none()
      return Effect.succeed(frame)
    })
    const loaded = yield* loadDevices({
      manifest,
      devices,
      nextFrame: channelZero,
      channels:
        extra.length === 0
          ? undefined
          : {
              extra: extra.map((c) => nextOn(ctx, c)),
              stray: (got) => violation(ctx, "device data of the channel's own devices", got)
            },
      lends: (channel) => (channel === 0 ? ctx.reader : extra[channel - 1]?.reader)?.lends === true,
      onControl: (control, channel) =>
        Effect.flatMap(messageOf(ctx, control, "device data"), (message) => {
          if (message._tag === "InitialDataSent" && control.device !== undefined) return Effect.succeed("ack" as const)
          // Answered at once, from the reader (of any channel; the answer goes back on channel 0):
          // its time is the channel's, not the devices'.
          if (message._tag === "Probe")
            return Effect.as(located(send(writer, { _tag: "ProbeAnswer", id: message.id })), "handled" as const)
          if (message._tag !== "SwitchoverBegun") return Effect.fail(violation(ctx, "device data", message._tag))
          if (channel === 0) ctx.log.enter("drain")
          return Effect.succeed("switchover" as const)
        }),
      acknowledge: (i) =>
        located(send(writer, { _tag: "InitialDataReceived", resumeEstimateMs: input.resumeEstimateMs }, i)),
      located,
      concurrency: typeof o.ioConcurrency === "number" ? o.ioConcurrency : devices.length,
      queueDepth: Math.max(1, Math.floor(options.queueDepth ?? 4)),
      emit: ctx.emit,
      now: ctx.now
    })
    // The vote waits for every channel's stream end: its totals are the decoder's last check.
    yield* Effect.forEach(extra, (c) => endOf(ctx, c), { concurrency: "unbounded", discard: true })
    manifest.devices.forEach((d, i) => {
      const t = loaded[i]
      if (t !== undefined) s.totals.set(d.id, t)
      s.bytes += (t?.precopyBytes ?? 0) + (t?.stopCopyBytes ?? 0)
    })
  })

/** The channel count a frame announces, if it is the source's `Channels`. */
const announcedChannels = (frame: Frame): number | undefined => {
  if (frame._tag !== "Control") return undefined
  const decoded = decodeMessage(frame)
  return Result.isSuccess(decoded) && decoded.success._tag === "Channels" ? decoded.success.count : undefined
}

/**
 * The next frame of an extra channel. It waits without the peer timeout: a channel whose devices
 * do not pre-copy is rightly silent until the switchover, and channel 0 (probes, messages) is
 * where silence is timed; a failure there ends this read too.
 */
const nextOn = (ctx: DestinationContext, c: JoinedChannel): Effect.Effect<Frame, SessionFault> =>
  nextFrameOf(ctx, c.reader, `device data on channel ${c.channel}`)

/** Reads an extra channel's stream end, whose totals the decoder checks (nothing may come between its last device's end and it). */
const endOf = (ctx: DestinationContext, c: JoinedChannel): Effect.Effect<void, SessionFault> =>
  Effect.flatMap(locatedIn(ctx.log)(c.reader.next), (frame) =>
    Option.isSome(frame) && frame.value._tag === "StreamEnd"
      ? Effect.void
      : Effect.fail(
          violation(
            ctx,
            `the stream end of channel ${c.channel}`,
            Option.isSome(frame) ? `a ${frame.value._tag} frame` : "the end of the connection"
          )
        )
  ).pipe(withinPeerTimeout(ctx.log, ctx.o.peerTimeoutMs, `the stream end of channel ${c.channel}`))
