import type { GroupRuntime } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import type { FrameWriter, Transport } from "@lockstep/stream"
import { Cause, Deferred, Effect, Exit, Fiber, Queue } from "effect"
import { ChannelMeter, Probes } from "./ChannelMeter.js"
import { PrecopyProgress } from "./Convergence.js"
import { ArcTimings, type DowntimeEstimate, StopCopyLengths } from "./Estimate.js"
import type { EventSink, SwitchoverReason } from "./Events.js"
import type { BusyStep, HandshakeRefused, MigrationCause } from "./MigrationError.js"
import type { ResolvedSourceOptions } from "./Options.js"
import { PhaseLog } from "./PhaseLog.js"
import { faultIn, type SessionFault, withinPeerTimeout } from "./SessionFault.js"

/** The destination's answer to the manifest. */
export type Answer =
  | { readonly _tag: "Accepted"; readonly migration: string }
  | { readonly _tag: "Refused"; readonly refusals: HandshakeRefused["refusals"] }

/** An acknowledgement of one device's initial data, with the destination's resume estimate. */
export interface Ack {
  readonly device: number
  readonly resumeEstimateMs: number
}

/** The destination's resume time, and when its confirmation arrived. */
export interface Confirmation {
  readonly resumeMs: number
  readonly at: number
}

/** How far the source got: what its summary and its recovery need. Each phase records its part. */
export interface SourceProgress {
  migration: string | undefined
  /** The journal knows the migration. */
  begun: boolean
  /** COMMIT is journalled: the source must stay stopped unless the destination renounces. */
  committed: boolean
  writer: FrameWriter.FrameWriter | undefined
  rounds: number
  reason: SwitchoverReason
  /** The reason as a sentence. */
  why: string
  estimate: DowntimeEstimate | undefined
  /** When the first switchover arc started. */
  switchoverAt: number | undefined
  switchoverCriticalPathMs: number
  decidedAt: number | undefined
  destinationResumeMs: number | undefined
  /** A step the destination said it is busy with and has not said it finished. */
  peerBusy: BusyStep | undefined
  /** Every REINIT seen, in order: the device's manifest index, the round, the new initial bytes. */
  reinits: Array<{ readonly device: number; readonly round: number; readonly initialBytes: number }>
  /** Due switchovers withdrawn at the decision instant. */
  withdrawn: number
}

/** What the destination says, as the listener hears it (see `SourceListener.ts`). */
export interface PeerSignals {
  readonly answer: Deferred.Deferred<Answer>
  readonly acks: Queue.Queue<Ack>
  /** The destination's devices are in RESUMING: data may flow. */
  readonly destinationReady: Deferred.Deferred<void>
  /** The destination's vote to commit, with its validation time. */
  readonly prepared: Deferred.Deferred<number>
  readonly resumed: Deferred.Deferred<Confirmation>
  readonly failure: Deferred.Deferred<never, MigrationCause>
  /** The listener has stopped (the destination's stream ended, or failed). */
  readonly done: Deferred.Deferred<void>
}

/** Bytes sent of one device. */
export interface SentTotals {
  precopyBytes: number
  stopCopyBytes: number
}

/** What every phase of the source session shares: its options, clock, meters, progress and peer. */
export interface SourceContext {
  readonly runtime: GroupRuntime
  readonly transport: Transport
  /** The transport with the peer timeout on writes. */
  readonly link: Transport
  readonly o: ResolvedSourceOptions
  readonly now: () => number
  readonly emit: EventSink
  readonly startedAt: number
  readonly log: PhaseLog
  readonly timings: ArcTimings
  readonly stopCopyLengths: StopCopyLengths
  readonly meter: ChannelMeter
  readonly probes: Probes
  readonly progress: PrecopyProgress
  readonly ids: ReadonlyArray<string>
  readonly totals: ReadonlyArray<SentTotals>
  readonly s: SourceProgress
  readonly peer: PeerSignals
  /** Whether a device of this side has been moved or reset: until then a failure touched nothing. */
  readonly touched: () => boolean
}

/** Builds the source session's shared context; `touched` reads whether the group was touched. */
export const makeSourceContext = (
  runtime: GroupRuntime,
  transport: Transport,
  link: Transport,
  o: ResolvedSourceOptions,
  now: () => number,
  touched: () => boolean
): Effect.Effect<SourceContext> =>
  Effect.gen(function* () {
    const ids = runtime.group.devices.map((d) => d.id)
    const meter = new ChannelMeter()
    const peer: PeerSignals = {
      answer: yield* Deferred.make<Answer>(),
      acks: yield* Queue.unbounded<Ack>(),
      destinationReady: yield* Deferred.make<void>(),
      prepared: yield* Deferred.make<number>(),
      resumed: yield* Deferred.make<Confirmation>(),
      failure: yield* Deferred.make<never, MigrationCause>(),
      done: yield* Deferred.make<void>()
    }
    const startedAt = now()
    return {
      runtime,
      transport,
      link,
      o,
      now,
      emit: o.onEvent,
      startedAt,
      log: new PhaseLog("source", o.onEvent, now),
      timings: new ArcTimings(o.assumedArcLatencyMs, (id) => runtime.devices.get(id)?.p2pQuiesceIsStop === true),
      stopCopyLengths: new StopCopyLengths(),
      meter,
      probes: new Probes(meter),
      progress: new PrecopyProgress(),
      ids,
      totals: ids.map(() => ({ precopyBytes: 0, stopCopyBytes: 0 })),
      s: {
        migration: undefined,
        begun: false,
        committed: false,
        writer: undefined,
        rounds: 0,
        reason: "no-precopy",
        why: "pre-copy is off, or no device supports it",
        estimate: undefined,
        switchoverAt: undefined,
        switchoverCriticalPathMs: 0,
        decidedAt: undefined,
        destinationResumeMs: undefined,
        peerBusy: undefined,
        reinits: [],
        withdrawn: 0
      },
      peer,
      touched
    }
  })

/** Waits for what the destination must say next; silence past the peer timeout fails. */
export const expect = <A>(
  ctx: SourceContext,
  deferred: Deferred.Deferred<A>,
  what: string
): Effect.Effect<A, SessionFault> =>
  Deferred.await(deferred).pipe(withinPeerTimeout(ctx.log, ctx.o.peerTimeoutMs, what))

/** The group's device at manifest index `i`. */
export const deviceAt = (ctx: SourceContext, i: number): Device => {
  const id = ctx.ids[i] ?? ""
  const device = ctx.runtime.devices.get(id)
  if (device === undefined) throw new RangeError(`no device ${id} in the group runtime`)
  return device
}

/**
 * Runs `step` on every device of `indices`, at most `o.ioConcurrency` at once; the first failure
 * calls `onFailure` (so the others stop at their next chunk, never mid-frame) and is answered
 * once every step has ended.
 */
export const everyDevice = <A, E extends MigrationCause>(
  ctx: SourceContext,
  indices: ReadonlyArray<number>,
  step: (i: number) => Effect.Effect<A, E>,
  onFailure: () => void
): Effect.Effect<ReadonlyArray<A>, SessionFault> =>
  Effect.gen(function* () {
    const exits = yield* Effect.forEach(
      indices,
      (i) =>
        Effect.exit(step(i)).pipe(
          Effect.tap((exit) =>
            Effect.sync(() => {
              if (Exit.isFailure(exit)) onFailure()
            })
          )
        ),
      { concurrency: ctx.o.ioConcurrency }
    )
    const values: Array<A> = []
    for (const exit of exits) {
      if (Exit.isSuccess(exit)) values.push(exit.value)
      else return yield* Effect.failCause(Cause.map(exit.cause, (cause) => faultIn(ctx.log, cause)))
    }
    return values
  })

/** Lets the destination hang up first (briefly), then closes the channel and stops listening. */
export const hangUp = (ctx: SourceContext, listener: Fiber.Fiber<void>): Effect.Effect<void> =>
  Effect.gen(function* () {
    yield* Deferred.await(ctx.peer.done).pipe(Effect.timeoutOption(ctx.o.closeGraceMs))
    yield* ctx.transport.close
    yield* Fiber.interrupt(listener)
    ctx.log.end()
  })
