import {
  beginPrecopy,
  enterStopCopyPlan,
  type GroupRuntime,
  Migratability,
  planTransition
} from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { hasFlag, type State } from "@lockstep/fsm"
import { FrameReader, FrameWriter, type Manifest, type Transport, withTimeouts } from "@lockstep/stream"
import { Cause, Clock, Deferred, Effect, Exit, Fiber, Option, Queue, Result } from "effect"
import { throttle } from "./Bandwidth.js"
import { assumedRate, ChannelMeter, Probes } from "./ChannelMeter.js"
import { decideSwitchover, PrecopyProgress, type RoundDecision } from "./Convergence.js"
import {
  ArcTimings,
  criticalPathMs,
  type DowntimeEstimate,
  estimateDowntime,
  measuredDowntime,
  StopCopyLengths
} from "./Estimate.js"
import type { DeviceTotals, SourceSummary, SwitchoverDecision, SwitchoverReason } from "./Events.js"
import { manifestOf } from "./Handshake.js"
import { unsettled } from "./Journal.js"
import {
  type BusyStep,
  DecisionFenced,
  HandshakeRefused,
  type MigrationCause,
  MigrationFailed,
  MigrationInterrupted,
  NotMigratable,
  PeerAborted,
  PeerBusy,
  PeerSilent,
  PrecopyLimitReached,
  ProtocolViolation,
  ReinitAfterSwitchover
} from "./MigrationError.js"
import { resolveSource, type SourceOptions } from "./Options.js"
import { leftInPlace, type Recovered, recoverGroup, recoveryFields, untouched } from "./Recovery.js"
import {
  abortMessage,
  describeCause,
  isChannelCause,
  movesDevice,
  originOf,
  PhaseLog,
  readStates,
  roundMs,
  SessionFault,
  send,
  transitionOptions
} from "./Session.js"
import { decodeMessage } from "./SessionMessage.js"
import { switchoverAndDrain } from "./Switchover.js"
import { drainDevice, precopyProgress, pumpPrecopy } from "./Transfer.js"

type Accepted = { readonly _tag: "Accepted"; readonly migration: string }
type SwitchDecision = Extract<RoundDecision, { readonly _tag: "Switch" }>
type Refused = { readonly _tag: "Refused"; readonly refusals: HandshakeRefused["refusals"] }

/** An acknowledgement of one device's initial data, with the destination's resume estimate. */
interface Ack {
  readonly device: number
  readonly resumeEstimateMs: number
}

/** How far the source got: what its summary and its recovery need. */
interface SourceProgress {
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

/**
 * The source side of a migration: offers `runtime`'s group over `transport`, pre-copies while
 * the group runs, switches over, drains, and commits through the journal. The session owns the
 * transport and closes it when done.
 *
 * On success the source group stays stopped (STOP_COPY): the destination owns it. On any
 * failure before COMMIT is journalled (and after it, if the destination renounces a failed
 * resume) the group is rolled back to RUNNING, the destination is told why, and the session
 * fails with one `MigrationFailed`. If the channel is lost after COMMIT, the migration stands:
 * the summary says the destination did not confirm.
 */
export const migrateSource: (
  runtime: GroupRuntime,
  transport: Transport,
  options?: SourceOptions
) => Effect.Effect<SourceSummary, MigrationFailed> = Effect.fn("Migration.source")(function* (
  runtime: GroupRuntime,
  transport: Transport,
  options: SourceOptions = {}
) {
  // Whether a device of this side has been moved or reset: until then a failure touched nothing.
  let touched = false
  const o = resolveSource({
    ...options,
    onEvent: (event) => {
      if (event._tag === "GroupTransition" && movesDevice(event.event)) touched = true
      options.onEvent?.(event)
    }
  })
  const clock = yield* Clock.Clock
  const now = () => clock.currentTimeMillisUnsafe()
  const emit = o.onEvent
  const startedAt = now()
  const log = new PhaseLog("source", emit, now)
  const timings = new ArcTimings(o.assumedArcLatencyMs, (id) => runtime.devices.get(id)?.p2pQuiesceIsStop === true)
  const stopCopyLengths = new StopCopyLengths()
  const meter = new ChannelMeter()
  const probes = new Probes(meter)
  const progress = new PrecopyProgress()
  const link = withTimeouts(transport, { write: o.peerTimeoutMs })
  const ids = runtime.group.devices.map((d) => d.id)
  const indexOf = new Map(ids.map((id, i) => [id, i] as const))
  const totals: Array<{ precopyBytes: number; stopCopyBytes: number }> = ids.map(() => ({
    precopyBytes: 0,
    stopCopyBytes: 0
  }))
  const fault = (cause: MigrationCause) =>
    new SessionFault({ cause, phase: cause._tag === "PeerAborted" ? cause.phase : log.phase })
  const located = <A, E extends MigrationCause, R>(effect: Effect.Effect<A, E, R>) => Effect.mapError(effect, fault)

  const s: SourceProgress = {
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
  }

  // What the destination says, read by a fiber of its own so that it is heard while this side
  // is busy writing (a destination that aborts stops reading, and a blocked write must not hide it).
  const answer = yield* Deferred.make<Accepted | Refused>()
  const acks = yield* Queue.unbounded<Ack>()
  const destinationReady = yield* Deferred.make<void>()
  const prepared = yield* Deferred.make<number>()
  /** The destination's resume time, and when its confirmation arrived. */
  const resumed = yield* Deferred.make<{ readonly resumeMs: number; readonly at: number }>()
  const peerFailure = yield* Deferred.make<never, MigrationCause>()
  const peerDone = yield* Deferred.make<void>()
  const violation = (expected: string, got: string) =>
    Deferred.fail(peerFailure, new ProtocolViolation({ expected, got }))

  const listen = (reader: FrameReader.FrameReader): Effect.Effect<void> =>
    Effect.gen(function* () {
      for (;;) {
        const next = yield* Effect.result(reader.next)
        if (Result.isFailure(next)) return yield* Deferred.fail(peerFailure, next.failure)
        if (Option.isNone(next.success)) {
          if (!Deferred.isDoneUnsafe(resumed))
            yield* violation("the destination's confirmation", "the end of its stream")
          return
        }
        const frame = next.success.value
        if (frame._tag === "StreamEnd") continue
        if (frame._tag !== "Control") return yield* violation("control frames", `a ${frame._tag} frame`)
        const decoded = decodeMessage(frame)
        if (Result.isFailure(decoded)) return yield* violation("a session message", decoded.failure)
        const message = decoded.success
        switch (message._tag) {
          case "Accepted":
          case "Refused":
            yield* Deferred.succeed(answer, message)
            break
          case "InitialDataReceived":
            if (frame.device === undefined) return yield* violation("an acknowledged device", "none")
            yield* Queue.offer(acks, { device: frame.device, resumeEstimateMs: message.resumeEstimateMs })
            break
          case "Busy":
            s.peerBusy = message.done ? undefined : message.step
            if (message.step === "prepare" && message.done) yield* Deferred.succeed(destinationReady, undefined)
            break
          case "Prepared":
            s.peerBusy = undefined
            yield* Deferred.succeed(prepared, message.validateMs)
            break
          case "Resumed":
            yield* Deferred.succeed(resumed, { resumeMs: message.resumeMs, at: now() })
            break
          case "ProbeAnswer":
            if (!(yield* probes.answer(message.id, now())))
              return yield* violation("answers to probes sent", `an answer to probe ${message.id}`)
            break
          case "Aborted":
            // Keep reading to the end of its stream: hanging up on unread bytes would reset the
            // connection under the destination.
            yield* Deferred.fail(
              peerFailure,
              new PeerAborted({ peer: "destination", phase: message.phase, tag: message.tag, reason: message.reason })
            )
            break
          default:
            return yield* violation("a destination's message", message._tag)
        }
      }
    }).pipe(Effect.ensuring(Deferred.succeed(peerDone, undefined)))

  /** Waits for what the destination must say next; silence past the peer timeout fails. */
  const expect = <A>(deferred: Deferred.Deferred<A>, what: string): Effect.Effect<A, SessionFault> =>
    Deferred.await(deferred).pipe(
      Effect.timeoutOrElse({
        duration: o.peerTimeoutMs,
        orElse: () => Effect.fail(fault(new PeerSilent({ waitingFor: what, timeoutMs: o.peerTimeoutMs })))
      })
    )

  const deviceAt = (i: number): Device => {
    const id = ids[i] ?? ""
    const device = runtime.devices.get(id)
    if (device === undefined) throw new RangeError(`no device ${id} in the group runtime`)
    return device
  }

  const work: Effect.Effect<SourceSummary, SessionFault> = Effect.gen(function* () {
    // Handshake: nothing is touched until the destination accepts and the journal knows.
    const report = Migratability.check(runtime.group)
    if (!report.migratable) return yield* fault(new NotMigratable({ side: "source", blockers: report.blockers }))
    for (const id of ids) deviceAt(indexOf.get(id) ?? -1)
    const writer = yield* located(FrameWriter.make(link, { chunkBytes: o.chunkBytes }))
    s.writer = writer
    // The journal first: a migration it has not settled is never followed by another (the
    // destination is told why).
    const previous = yield* located(unsettled(o.journal))
    if (previous !== undefined) return yield* fault(previous)
    const offeredAt = now()
    yield* located(writer.manifest(devices))
    const reply = yield* expect(answer, "the destination's answer to the manifest")
    if (reply._tag === "Refused") return yield* fault(new HandshakeRefused({ refusals: reply.refusals }))
    // An upper bound of the round trip (it includes the destination's check of the manifest):
    // the rounds' probes soon give the real one.
    meter.recordRoundTrip(now() - offeredAt)
    const migration = reply.migration
    s.migration = migration
    const journalStart = now()
    yield* located(o.journal.begin(migration))
    s.begun = true
    const journalMs = now() - journalStart
    emit({ _tag: "HandshakeDone", side: "source", migration, at: now() })

    // Prepare: PRE_COPY where supported.
    log.enter("prepare")
    const precopyDevices = o.precopy
      ? runtime.group.devices.flatMap((d, i) => (hasFlag(d.flags, "PRE_COPY") ? [i] : []))
      : []
    let states: Readonly<Record<string, State>> = Object.fromEntries(ids.map((id): [string, State] => [id, "RUNNING"]))
    // Pre-copy info v2, where a device takes it: it may then report REINIT (new initial data,
    // whose switchover-ack is owed again). A device that declines never reports it.
    yield* located(
      Effect.forEach(precopyDevices, (i) => deviceAt(i).enablePrecopyInfoV2 ?? Effect.succeed(false), {
        concurrency: "unbounded",
        discard: true
      })
    )
    if (precopyDevices.length > 0) {
      const begun = yield* located(beginPrecopy(runtime, transitionOptions(o, "source", "beginPrecopy", timings)))
      states = begun.to
    }
    // The destination reads no data before its devices are in RESUMING: until it says they are,
    // data would only fill the channel, and a write blocked past the timeout would break it.
    yield* expect(destinationReady, "the destination's devices to be ready for the data (RESUMING)")

    // Pre-copy rounds.
    const pace = throttle(o.bandwidthLimit)
    let stopping = false
    /** Devices whose current initial data is all sent (a REINIT takes a device out again). */
    const sentMarker = new Set<number>()
    // The destination acknowledges every marker once, in order: a device's switchover-ack holds
    // when its current initial data is sent and as many acks as markers have come back.
    const markers = ids.map(() => 0)
    const ackCounts = ids.map(() => 0)
    const isAcked = (i: number) => sentMarker.has(i) && (ackCounts[i] ?? 0) >= (markers[i] ?? 0)
    const takeAcks = (acksNow: ReadonlyArray<Ack>) => {
      for (const ack of acksNow) {
        if (ack.device >= ids.length) continue
        const n = (ackCounts[ack.device] ?? 0) + 1
        ackCounts[ack.device] = n
        // An ack of initial data that has since been re-initialised acknowledges nothing current.
        if (n !== markers[ack.device] || !sentMarker.has(ack.device)) continue
        s.destinationResumeMs = Math.max(s.destinationResumeMs ?? 0, ack.resumeEstimateMs)
        emit({ _tag: "InitialDataAcknowledged", side: "source", device: ids[ack.device] ?? "?", at: now() })
      }
    }
    const unacknowledged = () => precopyDevices.filter((i) => !isAcked(i)).map((i) => ids[i] ?? "?")
    const reinits = s.reinits
    /**
     * Pre-copy progress of the device at `i`. A REINIT (`VFIO_PRECOPY_INFO_REINIT`) makes its
     * initial data due again: its marker is sent again once that is all sent, and the switchover
     * waits for the destination's new acknowledgement (QEMU 11.1 re-gates switchover-ack so).
     */
    const progressOf = (i: number) =>
      Effect.tap(precopyProgress(deviceAt(i)), (info) =>
        Effect.sync(() => {
          if (info?.reinit !== true) return
          sentMarker.delete(i)
          reinits.push({ device: i, round: s.rounds, initialBytes: info.initialBytes })
          emit({
            _tag: "PrecopyReinitialised",
            device: ids[i] ?? "?",
            initialBytes: info.initialBytes,
            round: s.rounds,
            at: now()
          })
        })
      )
    /** Every device's STOP_COPY length now, asked or assumed. */
    const lengthsNow: Effect.Effect<ReadonlyArray<number>, SessionFault> = located(
      Effect.forEach(ids, (_, i) => stopCopyLengths.of(deviceAt(i)), { concurrency: "unbounded" })
    )
    /** The sum of `perDevice` over the devices whose length is reported, not assumed. */
    const reported = (perDevice: (i: number) => number) =>
      ids.reduce((n, id, i) => (stopCopyLengths.isAssumed(id) ? n : n + perDevice(i)), 0)
    const estimateFrom = (lengths: ReadonlyArray<number>): DowntimeEstimate => {
      const latency = (device: string, arc: { readonly from: State; readonly to: State }) =>
        timings.latency(device, arc)
      const switchPlan = enterStopCopyPlan(runtime.group, states)
      const resumeGuess = planTransition(runtime.group, { from: "RESUMING", to: "RUNNING" })
      return estimateDowntime({
        switchoverMs: Result.isSuccess(switchPlan) ? criticalPathMs(switchPlan.success, latency) : 0,
        remainingBytes: lengths.reduce((a, b) => a + b, 0),
        bandwidth: assumedRate(meter, o.bandwidthLimit),
        dirtyBytesPerSecond: progress.dirtyRate ?? 0,
        assumed: stopCopyLengths.assumed,
        oneWayMs: meter.oneWayMs,
        journalMs,
        resumeMs:
          s.destinationResumeMs ?? (Result.isSuccess(resumeGuess) ? criticalPathMs(resumeGuess.success, latency) : 0)
      })
    }
    /**
     * Sends a probe, which the destination answers as soon as it reads it. `opening`: the channel
     * is empty (the round before was acknowledged), so the answer times the round trip.
     */
    const probe = (opening: boolean): Effect.Effect<Deferred.Deferred<void>, SessionFault> =>
      Effect.flatMap(probes.open(opening, now()), ({ id, answered }) =>
        Effect.as(located(send(writer, { _tag: "Probe", id })), answered)
      )
    const limitReached = (limit: "rounds" | "time" | "stalled", estimate: DowntimeEstimate) =>
      o.onLimit === "switch"
        ? Effect.succeed<SwitchoverReason>(limit)
        : Effect.fail(
            fault(
              new PrecopyLimitReached({
                limit,
                rounds: s.rounds,
                estimateMs: estimate.totalMs,
                downtimeLimitMs: o.downtimeLimitMs,
                unacknowledged: unacknowledged()
              })
            )
          )

    /** One device's share of a round: what it has now, then its initial-data marker once that is all sent. */
    const pumpRound = (i: number) =>
      Effect.gen(function* () {
        const device = deviceAt(i)
        // A round sends what is pending when it starts, so that it ends even while pages are
        // dirtied faster than they are sent; without pre-copy info, the stop-copy length bounds it.
        const info = yield* progressOf(i)
        const budget = info === undefined ? yield* stopCopyLengths.of(device) : info.initialBytes + info.dirtyBytes
        // An assumed length bounds nothing real: such a device is read until it runs dry, or
        // until the pre-copy time limit, whichever comes first.
        const bounded = info !== undefined || !stopCopyLengths.isAssumed(device.id)
        const overTime = () => !bounded && now() - precopyStart >= o.maxPrecopyMs
        const pumped = yield* pumpPrecopy(device, i, writer, pace, o.chunkBytes, budget, () => stopping || overTime())
        const total = totals[i]
        if (total !== undefined) total.precopyBytes += pumped.bytes
        if (!sentMarker.has(i) && !stopping) {
          const after = info === undefined ? undefined : yield* progressOf(i)
          // Without pre-copy info, a round that sent its whole budget (the stop-copy length
          // when it began) has sent the initial data, which a saving session sends first.
          const initialDone = after === undefined ? pumped.dry || pumped.bytes >= budget : after.initialBytes === 0
          if (initialDone) {
            sentMarker.add(i)
            markers[i] = (markers[i] ?? 0) + 1
            yield* send(writer, { _tag: "InitialDataSent", bytes: total?.precopyBytes ?? 0 }, i)
            emit({ _tag: "InitialDataSent", device: device.id, bytes: total?.precopyBytes ?? 0, at: now() })
          }
        }
        return pumped.bytes
      })

    /** Runs `step` on every device; a failure stops the others at their next chunk, never mid-frame. */
    const everyDevice = <A, E extends MigrationCause>(
      indices: ReadonlyArray<number>,
      step: (i: number) => Effect.Effect<A, E>
    ): Effect.Effect<ReadonlyArray<A>, SessionFault> =>
      Effect.gen(function* () {
        const exits = yield* Effect.forEach(
          indices,
          (i) =>
            Effect.exit(step(i)).pipe(
              Effect.tap((exit) =>
                Effect.sync(() => {
                  if (Exit.isFailure(exit)) stopping = true
                })
              )
            ),
          { concurrency: o.ioConcurrency }
        )
        const values: Array<A> = []
        for (const exit of exits) {
          if (Exit.isSuccess(exit)) values.push(exit.value)
          else return yield* Effect.failCause(Cause.map(exit.cause, fault))
        }
        return values
      })

    /**
     * The decision instant: a round's figures say switch over (`due`), and every device's sizes
     * are read again (QEMU 11.1's last pending query at switchover). A REINIT re-gates the
     * switchover on that device's ack, and the estimate is made again from what is read now; the
     * round's rule then confirms the switchover or withdraws it, and pre-copy goes on. A converged
     * switchover must still be converged; one a limit forces stands while the limit holds.
     * Answers the decision that stands, or `undefined` when withdrawn.
     */
    const atDecisionInstant = (
      due: SwitchDecision,
      dueEstimateMs: number,
      decideOn: (estimateMs: number) => RoundDecision
    ) =>
      Effect.gen(function* () {
        emit({ _tag: "SwitchoverDue", reason: due.reason, round: s.rounds, estimateMs: dueEstimateMs, at: now() })
        const seen = reinits.length
        yield* everyDevice(precopyDevices, progressOf)
        const fresh = estimateFrom(yield* lengthsNow)
        s.estimate = fresh
        const decision = decideOn(fresh.totalMs)
        if (decision._tag === "Switch" && (due.reason !== "converged" || decision.reason === "converged"))
          return decision
        const reinitialised = reinits.slice(seen).map((r) => ids[r.device] ?? "?")
        s.withdrawn += 1
        emit({
          _tag: "SwitchoverWithdrawn",
          round: s.rounds,
          why:
            reinitialised.length > 0
              ? `${reinitialised.join(", ")} reported new initial data (REINIT) when read again: the switchover waits for its acknowledgement`
              : `the sizes read again at the decision put the downtime estimate at ${roundMs(fresh.totalMs)} ms, over the limit of ${o.downtimeLimitMs} ms`,
          reinitialised,
          estimateMs: fresh.totalMs,
          at: now()
        })
        return undefined
      })

    const precopyStart = now()
    if (precopyDevices.length > 0) {
      log.enter("precopy")
      const before = yield* lengthsNow
      progress.record(
        now(),
        reported((i) => before[i] ?? 0),
        0
      )
      for (;;) {
        s.rounds += 1
        // A round opens with a probe on an empty channel and closes with one after its last
        // chunk, whose answer says the destination has read the whole round: the next round
        // (or the switchover) starts on an empty channel, and the round's time is its delivery.
        const roundStart = now()
        yield* probe(true)
        const moved = yield* everyDevice(precopyDevices, pumpRound)
        const bytes = moved.reduce((a, b) => a + b, 0)
        if (bytes > 0)
          yield* expect(yield* probe(false), `the destination's acknowledgement of pre-copy round ${s.rounds}`)
        const durationMs = now() - roundStart
        meter.recordDelivery(bytes, durationMs)
        const bytesByDevice = Object.fromEntries(precopyDevices.map((i, k) => [ids[i] ?? "?", moved[k] ?? 0]))
        emit({ _tag: "RoundDone", round: s.rounds, bytes, bytesByDevice, durationMs, at: now() })
        takeAcks(yield* Queue.clear(acks))
        const lengths = yield* lengthsNow
        progress.record(
          now(),
          reported((i) => lengths[i] ?? 0),
          reported((i) => bytesByDevice[ids[i] ?? "?"] ?? 0)
        )
        const estimate = estimateFrom(lengths)
        s.estimate = estimate
        emit({
          _tag: "EstimateUpdated",
          round: s.rounds,
          estimate,
          downtimeLimitMs: o.downtimeLimitMs,
          unacknowledged: unacknowledged(),
          at: now()
        })
        const decideOn = (estimateMs: number) =>
          decideSwitchover({
            round: s.rounds,
            sentBytes: bytes,
            estimateMs,
            downtimeLimitMs: o.downtimeLimitMs,
            acknowledged: unacknowledged().length === 0,
            stall: progress.stall,
            maxRounds: o.maxRounds,
            elapsedMs: now() - precopyStart,
            maxPrecopyMs: o.maxPrecopyMs
          })
        const due = decideOn(estimate.totalMs)
        if (due._tag === "Switch") {
          const decision = yield* atDecisionInstant(due, estimate.totalMs, decideOn)
          if (decision === undefined) continue
          s.reason =
            decision.reason === "converged" ? "converged" : yield* limitReached(decision.reason, s.estimate ?? estimate)
          s.why = decision.why
          break
        }
        if (due._tag === "AwaitAcknowledgements") {
          const waited = Math.max(0, Math.min(o.peerTimeoutMs, o.maxPrecopyMs - (now() - precopyStart)))
          const next = yield* Queue.take(acks).pipe(Effect.timeoutOption(waited))
          if (Option.isNone(next) && waited >= o.peerTimeoutMs)
            return yield* fault(
              new PeerSilent({ waitingFor: `switchover-acks of ${unacknowledged().join(", ")}`, timeoutMs: waited })
            )
          if (Option.isSome(next)) takeAcks([next.value])
        }
      }
    }

    // Switchover: the group to STOP_COPY; each device drains as soon as it gets there.
    log.enter("switchover")
    emit({
      _tag: "SwitchoverDecided",
      reason: s.reason,
      why: s.why,
      rounds: s.rounds,
      estimateMs: s.estimate?.totalMs,
      at: now()
    })
    yield* located(send(writer, { _tag: "SwitchoverBegun" }))
    // After the decision: new initial data now would need a switchover-ack the destination no
    // longer gives (it was told the switchover began). QEMU 11.1 fails such a migration; so does
    // this, and the group rolls back.
    if (s.rounds > 0) {
      const infos = yield* everyDevice(precopyDevices, (i) => precopyProgress(deviceAt(i)))
      const late = infos.findIndex((info) => info?.reinit === true)
      if (late >= 0)
        return yield* fault(
          new ReinitAfterSwitchover({
            device: ids[precopyDevices[late] ?? -1] ?? "?",
            initialBytes: infos[late]?.initialBytes ?? 0
          })
        )
    }
    const switched = yield* located(
      switchoverAndDrain({
        runtime,
        options: (hook) => transitionOptions(o, "source", "enterStopCopy", timings, hook),
        limit: o.ioConcurrency,
        drain: (i, stop) =>
          Effect.gen(function* () {
            const bytes = yield* drainDevice(deviceAt(i), i, writer, pace, o.chunkBytes, stop)
            const total = totals[i]
            if (total !== undefined) total.stopCopyBytes += bytes
            if (!stop()) emit({ _tag: "DeviceDrained", side: "source", device: ids[i] ?? "?", bytes, at: now() })
          }),
        onSwitched: () => log.enter("drain")
      })
    )
    s.switchoverAt = switched.firstArcAt ?? now()
    s.switchoverCriticalPathMs = criticalPathMs(switched.report.plan, (device, arc) => timings.latency(device, arc))

    // Validate (the destination's) and commit: COMMIT goes to the journal before anyone is told.
    log.enter("validate")
    yield* expect(prepared, "the destination's vote to commit")
    log.enter("commit")
    // The decision point: once begun, the journal write completes and its outcome is kept, even
    // if the destination vanishes meanwhile (a write abandoned half-way could land later).
    const decision = yield* located(
      Effect.uninterruptible(
        Effect.tap(o.journal.decide(migration, "commit"), (d) =>
          Effect.sync(() => {
            s.committed = d === "committed"
            s.decidedAt = now()
          })
        )
      )
    )
    emit({ _tag: "DecisionRecorded", side: "source", migration, decision, at: now() })
    if (decision === "aborted") return yield* fault(new DecisionFenced({ migration }))
    yield* located(send(writer, { _tag: "Committed" }))

    // Resume (the destination's): wait for its confirmation; the source stays stopped. The stream
    // ends only then, so that a destination that cannot resume can still be told `Renounced`.
    log.enter("resume")
    const confirmation = yield* expect(resumed, "the destination's confirmation that it runs")
    const ended = yield* Effect.exit(writer.end)
    if (Exit.isFailure(ended))
      emit({
        _tag: "Warning",
        side: "source",
        reason: `the stream could not be ended: ${describeCause(ended.cause)}`,
        at: now()
      })
    return yield* finish(confirmation)
  })

  /** The summary of a committed migration: confirmed (with the destination's resume), or not. */
  const finish = (
    confirmation: { readonly resumeMs: number; readonly at: number } | undefined
  ): Effect.Effect<SourceSummary> =>
    Effect.gen(function* () {
      const migration = s.migration ?? ""
      const confirmed = confirmation !== undefined
      if (confirmed) {
        const completed = yield* Effect.exit(o.journal.complete(migration))
        if (Exit.isFailure(completed))
          emit({ _tag: "Warning", side: "source", reason: `journal: ${describeCause(completed.cause)}`, at: now() })
      } else {
        emit({
          _tag: "Warning",
          side: "source",
          reason: `migration ${migration} is committed but the destination did not confirm that it runs; the source stays stopped`,
          at: now()
        })
      }
      yield* Deferred.await(peerDone).pipe(Effect.timeoutOption(o.closeGraceMs))
      yield* transport.close
      yield* Fiber.interrupt(listener)
      log.end()
      const states = yield* readStates(runtime)
      const decidedAt = s.decidedAt ?? now()
      // From the decision to the confirmation: COMMIT crossed the channel, the destination resumed,
      // the confirmation crossed back; the crossings are the same empty channel, half each.
      if (confirmation !== undefined) meter.recordRoundTrip(confirmation.at - decidedAt - confirmation.resumeMs)
      const downtime =
        confirmation === undefined
          ? undefined
          : measuredDowntime({ switchoverAt: s.switchoverAt ?? decidedAt, decidedAt, confirmation })
      const downtimeMs = downtime === undefined ? undefined : roundMs(downtime)
      const decision: SwitchoverDecision = {
        reason: s.reason,
        why: s.why,
        rounds: s.rounds,
        estimateMs: s.estimate?.totalMs,
        downtimeLimitMs: o.downtimeLimitMs,
        remainingBytes: progress.history,
        deliveredBytesPerSecond: meter.rate,
        dirtyBytesPerSecond: progress.dirtyRate,
        roundTripMs: meter.roundTripMs
      }
      const summary: SourceSummary = {
        side: "source",
        migration,
        bytes: totals.reduce((n, t) => n + t.precopyBytes + t.stopCopyBytes, 0),
        devices: Object.fromEntries(ids.map((id, i): [string, DeviceTotals] => [id, totalsOf(totals[i])])),
        phases: log.durations,
        totalMs: roundMs(now() - startedAt),
        states,
        rounds: s.rounds,
        switchover: s.reason,
        decision,
        estimate: s.estimate,
        downtimeMs,
        downtimeLimitMs: o.downtimeLimitMs,
        downtimeLimitMissedByMs:
          downtimeMs !== undefined && downtimeMs > o.downtimeLimitMs
            ? roundMs(downtimeMs - o.downtimeLimitMs)
            : undefined,
        switchoverCriticalPathMs: roundMs(s.switchoverCriticalPathMs),
        assumedStopCopyLengths: stopCopyLengths.assumed,
        reinitialised: s.reinits.map((r) => ({
          device: ids[r.device] ?? "?",
          round: r.round,
          initialBytes: r.initialBytes
        })),
        switchoversWithdrawn: s.withdrawn,
        confirmed
      }
      emit({ _tag: "Completed", summary, at: now() })
      return summary
    })

  /** Rolls the group back to RUNNING after telling the destination why; answers the one error. */
  const recover = (faultValue: SessionFault): Effect.Effect<never, MigrationFailed> =>
    Effect.gen(function* () {
      const { cause, phase } = faultValue
      const touchedBefore = touched
      const warn = (reason: string) => emit({ _tag: "Warning", side: "source", reason, at: now() })
      const migration = s.migration
      let problem: string | undefined
      const renounced = s.committed && cause._tag === "PeerAborted"
      if (renounced && migration !== undefined) {
        // The destination failed to resume and offers the group back: it resets its devices once told.
        const recorded = yield* Effect.exit(o.journal.renounce(migration, cause.message))
        if (Exit.isFailure(recorded))
          problem = `the journal could not record that the destination renounced: ${describeCause(recorded.cause)}`
      }
      const writer = s.writer
      if (renounced && problem === undefined && writer !== undefined) {
        // Confirm: the destination resets its devices only once it knows the source owns the group.
        const confirmed = yield* Effect.exit(send(writer, { _tag: "Renounced" }).pipe(Effect.andThen(link.end)))
        if (Exit.isFailure(confirmed))
          warn(`the destination could not be told that the group is back: ${describeCause(confirmed.cause)}`)
      } else if (cause._tag !== "PeerAborted" && cause._tag !== "HandshakeRefused" && writer !== undefined) {
        const told = yield* Effect.exit(send(writer, abortMessage(phase, cause)).pipe(Effect.andThen(link.end)))
        if (Exit.isFailure(told)) warn(`the destination could not be told: ${describeCause(told.cause)}`)
      } else {
        const ended = yield* Effect.exit(link.end)
        if (Exit.isFailure(ended)) warn(`could not end the stream to the destination: ${describeCause(ended.cause)}`)
      }
      // Without a recorded renunciation the journal still says COMMIT: the source must stay stopped.
      const outcome: Recovered = !touchedBefore
        ? yield* untouched(runtime)
        : problem !== undefined
          ? yield* leftInPlace(runtime, "RUNNING", problem)
          : yield* recoverGroup(runtime, {
              policy: o.errorPolicy,
              home: "RUNNING",
              resetEvery: false,
              resetTimeoutMs: o.arcTimeoutMs,
              transition: transitionOptions(o, "source", "rollback", undefined)
            })
      emit({ _tag: "Recovered", side: "source", ok: outcome.complete, states: outcome.states, at: now() })
      yield* Deferred.await(peerDone).pipe(Effect.timeoutOption(o.closeGraceMs))
      yield* transport.close
      yield* Fiber.interrupt(listener)
      log.end()
      return yield* new MigrationFailed({
        side: "source",
        phase,
        origin: originOf("source", cause),
        cause,
        migration,
        ...recoveryFields(touchedBefore, outcome)
      })
    })

  // The listener outlives `work`: a failing source still hears the destination hang up.
  const devices = yield* manifestOf(runtime, o.compatibility)
  const manifest: Manifest = { _tag: "Manifest", devices }
  const listener = yield* Effect.forkChild(listen(yield* FrameReader.make(link, { peerManifest: manifest })))

  return yield* Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const outcome = yield* Effect.exit(
        restore(Effect.raceFirst(work, Effect.mapError(Deferred.await(peerFailure), fault)))
      )
      if (Exit.isSuccess(outcome)) return outcome.value
      let failure = Option.getOrElse(
        Cause.findErrorOption(outcome.cause),
        () => new SessionFault({ cause: new MigrationInterrupted(), phase: log.phase })
      )
      // A wait that timed out while the destination said it was busy with a step: it is working,
      // not silent, and the channel is fine; the timeout is too short for that step.
      const busy = s.peerBusy
      if (busy !== undefined && (failure.cause._tag === "PeerSilent" || failure.cause._tag === "TransportTimeout"))
        failure = fault(new PeerBusy({ peer: "destination", step: busy, timeoutMs: o.peerTimeoutMs }))
      // A channel failure is often the echo of the destination aborting: prefer its own reason.
      if (isChannelCause(failure.cause)) {
        const told = yield* Deferred.await(peerFailure).pipe(Effect.flip, Effect.timeoutOption(o.closeGraceMs))
        if (Option.isSome(told) && told.value._tag === "PeerAborted") failure = fault(told.value)
      }
      // A journal write can fail after landing: before rolling back, settle the decision. ABORT
      // wins unless COMMIT is already recorded, and then the migration stands.
      if (!s.committed && s.begun && s.migration !== undefined) {
        const decided = yield* Effect.exit(o.journal.decide(s.migration, "abort", failure.cause.message))
        if (Exit.isFailure(decided))
          emit({ _tag: "Warning", side: "source", reason: `journal: ${describeCause(decided.cause)}`, at: now() })
        else {
          emit({
            _tag: "DecisionRecorded",
            side: "source",
            migration: s.migration,
            decision: decided.value,
            at: now()
          })
          if (decided.value === "committed") {
            s.committed = true
            const writer = s.writer
            const told = writer === undefined ? undefined : yield* Effect.exit(send(writer, { _tag: "Committed" }))
            if (told !== undefined && Exit.isFailure(told))
              emit({
                _tag: "Warning",
                side: "source",
                reason: `COMMIT stands but could not be sent: ${describeCause(told.cause)}`,
                at: now()
              })
          }
        }
      }
      if (s.committed && failure.cause._tag !== "PeerAborted") return yield* finish(undefined)
      return yield* recover(failure)
    })
  )
})

const totalsOf = (t: { precopyBytes: number; stopCopyBytes: number } | undefined): DeviceTotals => ({
  precopyBytes: t?.precopyBytes ?? 0,
  stopCopyBytes: t?.stopCopyBytes ?? 0
})
