import { enterStopCopyPlan, planTransition } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import type { FrameWriter } from "@lockstep/stream"
import { type Deferred, Effect, Option, Queue, Result } from "effect"
import type { Throttle } from "./Bandwidth.js"
import { assumedRate } from "./ChannelMeter.js"
import { decideSwitchover, type RoundDecision } from "./Convergence.js"
import { criticalPathMs, type DowntimeEstimate, estimateDowntime } from "./Estimate.js"
import type { SwitchoverReason } from "./Events.js"
import { PeerSilent, PrecopyLimitReached } from "./MigrationError.js"
import { roundMs } from "./SessionClock.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { send } from "./SessionMessage.js"
import type { Lanes } from "./SourceChannels.js"
import { type Ack, deviceAt, everyDevice, expect, type SourceContext } from "./SourceContext.js"
import { precopyProgress, pumpPrecopy } from "./Transfer.js"

type SwitchDecision = Extract<RoundDecision, { readonly _tag: "Switch" }>

/** What the pre-copy phase needs. */
export interface PrecopyInput {
  /** Channel 0's writer: the probes' channel. */
  readonly writer: FrameWriter.FrameWriter
  /** Each device's channel. */
  readonly lanes: Lanes
  /** How long the journal took to record the start: part of the downtime estimate's commit. */
  readonly journalMs: number
  /** Manifest indices of the devices that pre-copy. */
  readonly precopyDevices: ReadonlyArray<number>
  /** Every device's state once prepared (the switchover's plan starts there). */
  readonly states: Readonly<Record<string, State>>
  readonly pace: Throttle
}

/**
 * Pre-copy: rounds of reading every pre-copying device while the group runs, until a round's
 * figures say switch over (converged, or a limit) and the decision instant confirms it. Records
 * the rounds, the reason, its sentence and the estimate in `ctx.s`. Nothing to do without a
 * pre-copying device.
 */
export const precopy = (ctx: SourceContext, input: PrecopyInput): Effect.Effect<void, SessionFault> =>
  input.precopyDevices.length > 0 ? new PrecopyRounds(ctx, input, ctx.now()).run() : Effect.void

/** The rounds' bookkeeping: markers sent, acknowledgements counted, and the round's steps. */
class PrecopyRounds {
  /** Set once anything failed: every device stops at its next chunk. */
  private stopping = false
  /** Devices whose current initial data is all sent (a REINIT takes a device out again). */
  private readonly sentMarker = new Set<number>()
  // The destination acknowledges every marker once, in order: a device's switchover-ack holds
  // when its current initial data is sent and as many acks as markers have come back.
  private readonly markers: Array<number>
  private readonly ackCounts: Array<number>

  constructor(
    private readonly ctx: SourceContext,
    private readonly input: PrecopyInput,
    private readonly precopyStart: number
  ) {
    this.markers = ctx.ids.map(() => 0)
    this.ackCounts = ctx.ids.map(() => 0)
  }

  private isAcked(i: number): boolean {
    return this.sentMarker.has(i) && (this.ackCounts[i] ?? 0) >= (this.markers[i] ?? 0)
  }

  private takeAcks(acksNow: ReadonlyArray<Ack>): void {
    const { ctx } = this
    for (const ack of acksNow) {
      if (ack.device >= ctx.ids.length) continue
      const n = (this.ackCounts[ack.device] ?? 0) + 1
      this.ackCounts[ack.device] = n
      // An ack of initial data that has since been re-initialised acknowledges nothing current.
      if (n !== this.markers[ack.device] || !this.sentMarker.has(ack.device)) continue
      ctx.s.destinationResumeMs = Math.max(ctx.s.destinationResumeMs ?? 0, ack.resumeEstimateMs)
      ctx.emit({ _tag: "InitialDataAcknowledged", side: "source", device: ctx.ids[ack.device] ?? "?", at: ctx.now() })
    }
  }

  private unacknowledged(): ReadonlyArray<string> {
    return this.input.precopyDevices.filter((i) => !this.isAcked(i)).map((i) => this.ctx.ids[i] ?? "?")
  }

  /**
   * Pre-copy progress of the device at `i`. A REINIT (`VFIO_PRECOPY_INFO_REINIT`) makes its
   * initial data due again: its marker is sent again once that is all sent, and the switchover
   * waits for the destination's new acknowledgement (QEMU 11.1 re-gates switchover-ack so).
   */
  private progressOf = (i: number) => {
    const { ctx } = this
    return Effect.tap(precopyProgress(deviceAt(ctx, i)), (info) =>
      Effect.sync(() => {
        if (info?.reinit !== true) return
        this.sentMarker.delete(i)
        ctx.s.reinits.push({ device: i, round: ctx.s.rounds, initialBytes: info.initialBytes })
        ctx.emit({
          _tag: "PrecopyReinitialised",
          device: ctx.ids[i] ?? "?",
          initialBytes: info.initialBytes,
          round: ctx.s.rounds,
          at: ctx.now()
        })
      })
    )
  }

  /** Every device's STOP_COPY length now, asked or assumed. */
  private lengthsNow(): Effect.Effect<ReadonlyArray<number>, SessionFault> {
    const { ctx } = this
    return locatedIn(ctx.log)(
      Effect.forEach(ctx.ids, (_, i) => ctx.stopCopyLengths.of(deviceAt(ctx, i)), { concurrency: "unbounded" })
    )
  }

  /** The sum of `perDevice` over the devices whose length is reported, not assumed. */
  private reported(perDevice: (i: number) => number): number {
    const { stopCopyLengths } = this.ctx
    return this.ctx.ids.reduce((n, id, i) => (stopCopyLengths.isAssumed(id) ? n : n + perDevice(i)), 0)
  }

  private estimateFrom(lengths: ReadonlyArray<number>): DowntimeEstimate {
    const { ctx } = this
    const latency = (device: string, arc: { readonly from: State; readonly to: State }) =>
      ctx.timings.latency(device, arc)
    const switchPlan = enterStopCopyPlan(ctx.runtime.group, this.input.states)
    const resumeGuess = planTransition(ctx.runtime.group, { from: "RESUMING", to: "RUNNING" })
    return estimateDowntime({
      switchoverMs: Result.isSuccess(switchPlan) ? criticalPathMs(switchPlan.success, latency) : 0,
      remainingBytes: lengths.reduce((a, b) => a + b, 0),
      bandwidth: assumedRate(ctx.meter, ctx.o.bandwidthLimit),
      dirtyBytesPerSecond: ctx.progress.dirtyRate ?? 0,
      assumed: ctx.stopCopyLengths.assumed,
      oneWayMs: ctx.meter.oneWayMs,
      journalMs: this.input.journalMs,
      resumeMs:
        ctx.s.destinationResumeMs ?? (Result.isSuccess(resumeGuess) ? criticalPathMs(resumeGuess.success, latency) : 0)
    })
  }

  /**
   * Sends a probe, which the destination answers as soon as it reads it. `opening`: the channel
   * is empty (the round before was acknowledged), so the answer times the round trip.
   */
  private probe(opening: boolean, writer = this.input.writer): Effect.Effect<Deferred.Deferred<void>, SessionFault> {
    const { ctx } = this
    return Effect.flatMap(ctx.probes.open(opening, ctx.now()), ({ id, answered }) =>
      Effect.as(locatedIn(ctx.log)(send(writer, { _tag: "Probe", id })), answered)
    )
  }

  private limitReached(
    limit: "rounds" | "time" | "stalled",
    estimate: DowntimeEstimate
  ): Effect.Effect<SwitchoverReason, SessionFault> {
    const { ctx } = this
    return ctx.o.onLimit === "switch"
      ? Effect.succeed<SwitchoverReason>(limit)
      : Effect.fail(
          faultIn(
            ctx.log,
            new PrecopyLimitReached({
              limit,
              rounds: ctx.s.rounds,
              estimateMs: estimate.totalMs,
              downtimeLimitMs: ctx.o.downtimeLimitMs,
              unacknowledged: this.unacknowledged()
            })
          )
        )
  }

  /** One device's share of a round: what it has now, then its initial-data marker once that is all sent. */
  private pumpRound = (i: number) => {
    const { ctx, input } = this
    const self = this
    return Effect.gen(function* () {
      const device = deviceAt(ctx, i)
      // A round sends what is pending when it starts, so that it ends even while pages are
      // dirtied faster than they are sent; without pre-copy info, the stop-copy length bounds it.
      const info = yield* self.progressOf(i)
      const budget = info === undefined ? yield* ctx.stopCopyLengths.of(device) : info.initialBytes + info.dirtyBytes
      // An assumed length bounds nothing real: such a device is read until it runs dry, or
      // until the pre-copy time limit, whichever comes first.
      const bounded = info !== undefined || !ctx.stopCopyLengths.isAssumed(device.id)
      const overTime = () => !bounded && ctx.now() - self.precopyStart >= ctx.o.maxPrecopyMs
      const route = input.lanes.route(i)
      const pumped = yield* pumpPrecopy(
        device,
        route.index,
        route.writer,
        input.pace,
        ctx.o.chunkBytes,
        budget,
        () => self.stopping || overTime()
      )
      const total = ctx.totals[i]
      if (total !== undefined) total.precopyBytes += pumped.bytes
      if (!self.sentMarker.has(i) && !self.stopping) {
        const after = info === undefined ? undefined : yield* self.progressOf(i)
        // Without pre-copy info, a round that sent its whole budget (the stop-copy length
        // when it began) has sent the initial data, which a saving session sends first.
        const initialDone = after === undefined ? pumped.dry || pumped.bytes >= budget : after.initialBytes === 0
        if (initialDone) {
          self.sentMarker.add(i)
          self.markers[i] = (self.markers[i] ?? 0) + 1
          // On the device's channel, after its data: the destination acknowledges what it has read.
          yield* send(route.writer, { _tag: "InitialDataSent", bytes: total?.precopyBytes ?? 0 }, route.index)
          ctx.emit({ _tag: "InitialDataSent", device: device.id, bytes: total?.precopyBytes ?? 0, at: ctx.now() })
        }
      }
      return pumped.bytes
    })
  }

  private everyDevice<A, E extends SessionFault["cause"]>(step: (i: number) => Effect.Effect<A, E>) {
    return everyDevice(this.ctx, this.input.precopyDevices, step, () => {
      this.stopping = true
    })
  }

  /**
   * The decision instant: a round's figures say switch over (`due`), and every device's sizes
   * are read again (QEMU 11.1's last pending query at switchover). A REINIT re-gates the
   * switchover on that device's ack, and the estimate is made again from what is read now; the
   * round's rule then confirms the switchover or withdraws it, and pre-copy goes on. A converged
   * switchover must still be converged; one a limit forces stands while the limit holds.
   * Answers the decision that stands, or `undefined` when withdrawn.
   */
  private atDecisionInstant(
    due: SwitchDecision,
    dueEstimateMs: number,
    decideOn: (estimateMs: number) => RoundDecision
  ): Effect.Effect<SwitchDecision | undefined, SessionFault> {
    const { ctx } = this
    const { s } = ctx
    const self = this
    return Effect.gen(function* () {
      ctx.emit({ _tag: "SwitchoverDue", reason: due.reason, round: s.rounds, estimateMs: dueEstimateMs, at: ctx.now() })
      const seen = s.reinits.length
      yield* self.everyDevice(self.progressOf)
      const fresh = self.estimateFrom(yield* self.lengthsNow())
      s.estimate = fresh
      const decision = decideOn(fresh.totalMs)
      if (decision._tag === "Switch" && (due.reason !== "converged" || decision.reason === "converged")) return decision
      const reinitialised = s.reinits.slice(seen).map((r) => ctx.ids[r.device] ?? "?")
      s.withdrawn += 1
      ctx.emit({
        _tag: "SwitchoverWithdrawn",
        round: s.rounds,
        why:
          reinitialised.length > 0
            ? `${reinitialised.join(", ")} reported new initial data (REINIT) when read again: the switchover waits for its acknowledgement`
            : `the sizes read again at the decision put the downtime estimate at ${roundMs(fresh.totalMs)} ms, over the limit of ${ctx.o.downtimeLimitMs} ms`,
        reinitialised,
        estimateMs: fresh.totalMs,
        at: ctx.now()
      })
      return undefined
    })
  }

  /**
   * One round. It opens with a probe on an empty channel and closes with one after its last
   * chunk, whose answer says the destination has read the whole round: the next round (or the
   * switchover) starts on an empty channel, and the round's time is its delivery. Answers the
   * round's decision and the estimate it was made from.
   */
  private round(): Effect.Effect<
    { readonly due: RoundDecision; readonly estimate: DowntimeEstimate; readonly bytes: number },
    SessionFault
  > {
    const { ctx, input } = this
    const { s, now } = ctx
    const self = this
    return Effect.gen(function* () {
      s.rounds += 1
      const roundStart = now()
      yield* self.probe(true)
      const moved = yield* self.everyDevice(self.pumpRound)
      const bytes = moved.reduce((a, b) => a + b, 0)
      if (bytes > 0) {
        // A closing probe on every channel: the round is delivered once each has been read to it.
        const answers = yield* Effect.forEach(input.lanes.writers, (writer) => self.probe(false, writer))
        for (const answered of answers)
          yield* expect(ctx, answered, `the destination's acknowledgement of pre-copy round ${s.rounds}`)
      }
      const durationMs = now() - roundStart
      ctx.meter.recordDelivery(bytes, durationMs)
      const bytesByDevice = Object.fromEntries(input.precopyDevices.map((i, k) => [ctx.ids[i] ?? "?", moved[k] ?? 0]))
      ctx.emit({ _tag: "RoundDone", round: s.rounds, bytes, bytesByDevice, durationMs, at: now() })
      self.takeAcks(yield* Queue.clear(ctx.peer.acks))
      const lengths = yield* self.lengthsNow()
      ctx.progress.record(
        now(),
        self.reported((i) => lengths[i] ?? 0),
        self.reported((i) => bytesByDevice[ctx.ids[i] ?? "?"] ?? 0)
      )
      const estimate = self.estimateFrom(lengths)
      s.estimate = estimate
      ctx.emit({
        _tag: "EstimateUpdated",
        round: s.rounds,
        estimate,
        downtimeLimitMs: ctx.o.downtimeLimitMs,
        unacknowledged: self.unacknowledged(),
        at: now()
      })
      return { due: self.decideOn(bytes, estimate.totalMs), estimate, bytes }
    })
  }

  private decideOn(sentBytes: number, estimateMs: number): RoundDecision {
    const { ctx } = this
    return decideSwitchover({
      round: ctx.s.rounds,
      sentBytes,
      estimateMs,
      downtimeLimitMs: ctx.o.downtimeLimitMs,
      acknowledged: this.unacknowledged().length === 0,
      stall: ctx.progress.stall,
      maxRounds: ctx.o.maxRounds,
      elapsedMs: ctx.now() - this.precopyStart,
      maxPrecopyMs: ctx.o.maxPrecopyMs
    })
  }

  /** Rounds until a switchover decision stands. */
  run(): Effect.Effect<void, SessionFault> {
    const { ctx } = this
    const { s, o, now } = ctx
    const self = this
    return Effect.gen(function* () {
      ctx.log.enter("precopy")
      const before = yield* self.lengthsNow()
      ctx.progress.record(
        now(),
        self.reported((i) => before[i] ?? 0),
        0
      )
      for (;;) {
        const { due, estimate, bytes } = yield* self.round()
        if (due._tag === "Switch") {
          const decision = yield* self.atDecisionInstant(due, estimate.totalMs, (ms) => self.decideOn(bytes, ms))
          if (decision === undefined) continue
          s.reason =
            decision.reason === "converged"
              ? "converged"
              : yield* self.limitReached(decision.reason, s.estimate ?? estimate)
          s.why = decision.why
          return
        }
        if (due._tag === "AwaitAcknowledgements") {
          const waited = Math.max(0, Math.min(o.peerTimeoutMs, o.maxPrecopyMs - (now() - self.precopyStart)))
          const next = yield* Queue.take(ctx.peer.acks).pipe(Effect.timeoutOption(waited))
          if (Option.isNone(next) && waited >= o.peerTimeoutMs)
            return yield* faultIn(
              ctx.log,
              new PeerSilent({
                waitingFor: `switchover-acks of ${self.unacknowledged().join(", ")}`,
                timeoutMs: waited
              })
            )
          if (Option.isSome(next)) self.takeAcks([next.value])
        }
      }
    })
  }
}
