import { beginPrecopy } from "@lockstep/coordinator"
import { hasFlag, type State } from "@lockstep/fsm"
import { Effect } from "effect"
import { transitionOptions } from "./GroupTransition.js"
import { locatedIn, type SessionFault } from "./SessionFault.js"
import { deviceAt, expect, type SourceContext } from "./SourceContext.js"

/** What the prepare phase leaves. */
export interface Prepared {
  /** Manifest indices of the devices that pre-copy. */
  readonly precopyDevices: ReadonlyArray<number>
  /** Every device's state once prepared. */
  readonly states: Readonly<Record<string, State>>
}

/**
 * Prepare: PRE_COPY where supported (with pre-copy info v2 where a device takes it), then wait
 * until the destination says its devices are in RESUMING: it reads no data before, which would
 * only fill the channel, and a write blocked past the timeout would break it.
 */
export const prepare = (ctx: SourceContext): Effect.Effect<Prepared, SessionFault> =>
  Effect.gen(function* () {
    const { o, runtime } = ctx
    const located = locatedIn(ctx.log)
    ctx.log.enter("prepare")
    const precopyDevices = o.precopy
      ? runtime.group.devices.flatMap((d, i) => (hasFlag(d.flags, "PRE_COPY") ? [i] : []))
      : []
    let states: Readonly<Record<string, State>> = Object.fromEntries(
      ctx.ids.map((id): [string, State] => [id, "RUNNING"])
    )
    // Pre-copy info v2, where a device takes it: it may then report REINIT (new initial data,
    // whose switchover-ack is owed again). A device that declines never reports it.
    yield* located(
      Effect.forEach(precopyDevices, (i) => deviceAt(ctx, i).enablePrecopyInfoV2 ?? Effect.succeed(false), {
        concurrency: "unbounded",
        discard: true
      })
    )
    if (precopyDevices.length > 0) {
      const begun = yield* located(beginPrecopy(runtime, transitionOptions(o, "source", "beginPrecopy", ctx.timings)))
      states = begun.to
    }
    yield* expect(ctx, ctx.peer.destinationReady, "the destination's devices to be ready for the data (RESUMING)")
    return { precopyDevices, states }
  })
