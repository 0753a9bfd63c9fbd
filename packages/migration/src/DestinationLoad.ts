import type { FrameWriter, Manifest } from "@lockstep/stream"
import { Effect } from "effect"
import { type DestinationContext, messageOf, nextFrame, violation } from "./DestinationContext.js"
import { loadDevices, manifestDevices } from "./Loading.js"
import { locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"

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
 * once, initial data acknowledged, and `SwitchoverBegun` starts the drain. Records the totals in
 * `ctx.s`.
 */
export const load = (ctx: DestinationContext, input: LoadInput): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { s, o, options } = ctx
    const { manifest, writer } = input
    const located = locatedIn(ctx.log)
    ctx.log.enter("precopy")
    const devices = manifestDevices(manifest, ctx.runtime)
    const loaded = yield* loadDevices({
      manifest,
      devices,
      nextFrame: nextFrame(ctx, "device data"),
      onControl: (control) =>
        Effect.flatMap(messageOf(ctx, control, "device data"), (message) => {
          if (message._tag === "InitialDataSent" && control.device !== undefined) return Effect.succeed("ack" as const)
          // Answered at once, from the reader: its time is the channel's, not the devices'.
          if (message._tag === "Probe")
            return Effect.as(located(send(writer, { _tag: "ProbeAnswer", id: message.id })), "handled" as const)
          if (message._tag !== "SwitchoverBegun") return Effect.fail(violation(ctx, "device data", message._tag))
          ctx.log.enter("drain")
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
    manifest.devices.forEach((d, i) => {
      const t = loaded[i]
      if (t !== undefined) s.totals.set(d.id, t)
      s.bytes += (t?.precopyBytes ?? 0) + (t?.stopCopyBytes ?? 0)
    })
  })
