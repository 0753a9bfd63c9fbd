import { Effect } from "effect"
import type { Throttle } from "./Bandwidth.js"
import { criticalPathMs } from "./Estimate.js"
import { transitionOptions } from "./GroupTransition.js"
import { ReinitAfterSwitchover } from "./MigrationError.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"
import type { Lanes } from "./SourceChannels.js"
import { deviceAt, everyDevice, type SourceContext } from "./SourceContext.js"
import { switchoverAndDrain } from "./Switchover.js"
import { drainDevice, precopyProgress } from "./Transfer.js"

/** What the switchover (and drain) phase needs. */
export interface SwitchoverInput {
  readonly lanes: Lanes
  /** Manifest indices of the devices that pre-copied. */
  readonly precopyDevices: ReadonlyArray<number>
  readonly pace: Throttle
}

/**
 * Switchover and drain: the decision announced, the group to STOP_COPY, each device drained as
 * soon as it gets there (the block `saveGroup` shares, {@link switchoverAndDrain}). Records when
 * the downtime began and the switchover's critical path in `ctx.s`.
 */
export const switchover = (ctx: SourceContext, input: SwitchoverInput): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { s, o, now, ids, emit } = ctx
    const { lanes, precopyDevices } = input
    const located = locatedIn(ctx.log)
    ctx.log.enter("switchover")
    emit({
      _tag: "SwitchoverDecided",
      reason: s.reason,
      why: s.why,
      rounds: s.rounds,
      estimateMs: s.estimate?.totalMs,
      at: now()
    })
    // On every channel: each channel's reader counts what follows as stop-copy data.
    yield* located(Effect.forEach(lanes.writers, (writer) => send(writer, { _tag: "SwitchoverBegun" })))
    // After the decision: new initial data now would need a switchover-ack the destination no
    // longer gives (it was told the switchover began). QEMU 11.1 fails such a migration; so does
    // this, and the group rolls back.
    if (s.rounds > 0) {
      const infos = yield* everyDevice(
        ctx,
        precopyDevices,
        (i) => precopyProgress(deviceAt(ctx, i)),
        () => undefined
      )
      const late = infos.findIndex((info) => info?.reinit === true)
      if (late >= 0)
        return yield* faultIn(
          ctx.log,
          new ReinitAfterSwitchover({
            device: ids[precopyDevices[late] ?? -1] ?? "?",
            initialBytes: infos[late]?.initialBytes ?? 0
          })
        )
    }
    const switched = yield* located(
      switchoverAndDrain({
        runtime: ctx.runtime,
        options: (hook) => transitionOptions(o, "source", "enterStopCopy", ctx.timings, hook),
        limit: o.ioConcurrency,
        drain: (i, stop) =>
          Effect.gen(function* () {
            const route = lanes.route(i)
            const bytes = yield* drainDevice(
              deviceAt(ctx, i),
              route.index,
              route.writer,
              input.pace,
              o.chunkBytes,
              stop
            )
            const total = ctx.totals[i]
            if (total !== undefined) total.stopCopyBytes += bytes
            if (!stop()) emit({ _tag: "DeviceDrained", side: "source", device: ids[i] ?? "?", bytes, at: now() })
          }),
        onSwitched: () => ctx.log.enter("drain")
      })
    )
    yield* located(lanes.end)
    s.switchoverAt = switched.firstArcAt ?? now()
    s.switchoverCriticalPathMs = criticalPathMs(switched.report.plan, (device, arc) => ctx.timings.latency(device, arc))
  })
