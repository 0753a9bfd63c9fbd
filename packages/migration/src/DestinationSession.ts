import { type GroupRuntime, planTransition, prepareResume, resume, stop } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { type Frame, FrameReader, FrameWriter, type Manifest, type Transport, withTimeouts } from "@lockstep/stream"
import { Cause, Clock, Effect, Exit, Option, Result } from "effect"
import { ArcTimings, criticalPathMs } from "./Estimate.js"
import type { DestinationSummary, DeviceTotals } from "./Events.js"
import { checkManifest } from "./Handshake.js"
import { newMigrationId } from "./Journal.js"
import { loadDevices } from "./Loading.js"
import {
  CommitInDoubt,
  HandshakeRefused,
  type MigrationCause,
  MigrationFailed,
  MigrationInterrupted,
  PeerAborted,
  PreparationFailed,
  ProtocolViolation,
  ResumeIncomplete
} from "./MigrationError.js"
import { type DestinationOptions, resolveSession } from "./Options.js"
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
import { decodeMessage, type SessionMessage } from "./SessionMessage.js"

/** How far the destination got: what its summary and its recovery need. */
interface DestinationProgress {
  migration: string | undefined
  /** The vote has begun to go out: from here the decision must be learnt, never guessed. */
  voted: boolean
  /** The decision is known (received, or read from the source's journal). */
  decided: boolean
  /** The decision is COMMIT: from here the devices hold the only state that may run, never to be reset. */
  committed: boolean
  /** Committed, the resume failed, and the source's journal records that the group was given back. */
  givenBack: boolean
  writer: FrameWriter.FrameWriter | undefined
  bytes: number
  validateMs: number
  resumeMs: number
  /** The decision was read from the source's journal, the channel being lost. */
  fromJournal: boolean
  totals: Map<string, DeviceTotals>
}

/**
 * The destination side of a migration: checks the source's manifest against `runtime`'s group
 * before touching any device, takes every device to RESUMING, writes the stream into them
 * (each device by its own writer, so a slow device slows the channel, never a buffer), validates
 * (→ STOP), votes to commit, and resumes (→ RUNNING, in group order) only once the source has
 * journalled COMMIT. The session owns the transport and closes it when done.
 *
 * On any failure before it runs, the devices it touched are reset and parked in STOP, the source
 * is told why, and the session fails with one `MigrationFailed`. Lost after its vote, it asks
 * `decisionJournal` (fencing an undecided migration with ABORT), or fails with `CommitInDoubt`
 * leaving the devices validated in STOP.
 */
export const migrateDestination: (
  runtime: GroupRuntime,
  transport: Transport,
  options?: DestinationOptions
) => Effect.Effect<DestinationSummary, MigrationFailed> = Effect.fn("Migration.destination")(function* (
  runtime: GroupRuntime,
  transport: Transport,
  options: DestinationOptions = {}
) {
  // Whether a device of this side has been moved or reset: until then a failure touched nothing.
  let touched = false
  const o = resolveSession({
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
  const log = new PhaseLog("destination", emit, now)
  const timings = new ArcTimings(1)
  const link = withTimeouts(transport, { read: o.peerTimeoutMs, write: o.peerTimeoutMs })
  const ids = runtime.group.devices.map((d) => d.id)
  const fault = (cause: MigrationCause) =>
    new SessionFault({ cause, phase: cause._tag === "PeerAborted" ? cause.phase : log.phase })
  const located = <A, E extends MigrationCause, R>(effect: Effect.Effect<A, E, R>) => Effect.mapError(effect, fault)
  const violation = (expected: string, got: string) => fault(new ProtocolViolation({ expected, got }))

  const s: DestinationProgress = {
    migration: undefined,
    voted: false,
    decided: false,
    committed: false,
    givenBack: false,
    writer: undefined,
    bytes: 0,
    validateMs: 0,
    resumeMs: 0,
    fromJournal: false,
    totals: new Map()
  }

  const reader = yield* FrameReader.make(link)
  const nextFrame = (what: string): Effect.Effect<Frame, SessionFault> =>
    located(reader.next).pipe(
      Effect.flatMap((frame) =>
        Option.isSome(frame) ? Effect.succeed(frame.value) : Effect.fail(violation(what, "the end of the stream"))
      )
    )
  const messageOf = (frame: Frame, what: string): Effect.Effect<SessionMessage, SessionFault> => {
    if (frame._tag !== "Control") return Effect.fail(violation(what, `a ${frame._tag} frame`))
    const decoded = decodeMessage(frame)
    if (Result.isFailure(decoded)) return Effect.fail(violation(what, decoded.failure))
    const message = decoded.success
    return message._tag === "Aborted"
      ? Effect.fail(
          fault(new PeerAborted({ peer: "source", phase: message.phase, tag: message.tag, reason: message.reason }))
        )
      : Effect.succeed(message)
  }

  const work: Effect.Effect<DestinationSummary, SessionFault> = Effect.gen(function* () {
    // Handshake: check the manifest before touching anything.
    const first = yield* nextFrame("the manifest")
    if (first._tag !== "Manifest") {
      yield* messageOf(first, "the manifest")
      return yield* violation("the manifest", `a ${first._tag} frame`)
    }
    const manifest: Manifest = first
    const writer = yield* located(FrameWriter.make(link, { peerManifest: manifest }))
    s.writer = writer
    const refusals = yield* checkManifest(manifest, runtime, o.compatibility)
    if (refusals.length > 0) {
      yield* located(send(writer, { _tag: "Refused", refusals }))
      return yield* fault(new HandshakeRefused({ refusals }))
    }
    const migration = (options.migrationId ?? newMigrationId)()
    s.migration = migration
    yield* located(send(writer, { _tag: "Accepted", migration }))
    emit({ _tag: "HandshakeDone", side: "destination", migration, at: now() })

    // Prepare: every device to RESUMING. Slow arcs may outlast the source's peer timeout: say so,
    // so that the source can tell a busy destination from a silent one.
    log.enter("prepare")
    yield* located(send(writer, { _tag: "Busy", step: "prepare", done: false }))
    yield* located(prepareResume(runtime, transitionOptions(o, "destination", "prepareResume", timings)))
    yield* located(send(writer, { _tag: "Busy", step: "prepare", done: true }))
    const resumePath = planTransition(runtime.group, { from: "RESUMING", to: "RUNNING" })
    const resumeEstimateMs = Result.isSuccess(resumePath)
      ? criticalPathMs(resumePath.success, (device, arc) => timings.latency(device, arc))
      : 0

    // Load: every device written concurrently, in stream order per device.
    log.enter("precopy")
    const devices: ReadonlyArray<Device> = manifest.devices.map((d) => {
      const device = runtime.devices.get(d.id)
      if (device === undefined) throw new RangeError(`checked manifest names ${d.id}, which the runtime lacks`)
      return device
    })
    const loaded = yield* loadDevices({
      manifest,
      devices,
      nextFrame: nextFrame("device data"),
      onControl: (control) =>
        Effect.flatMap(messageOf(control, "device data"), (message) => {
          if (message._tag === "InitialDataSent" && control.device !== undefined) return Effect.succeed("ack" as const)
          // Answered at once, from the reader: its time is the channel's, not the devices'.
          if (message._tag === "Probe")
            return Effect.as(located(send(writer, { _tag: "ProbeAnswer", id: message.id })), "handled" as const)
          if (message._tag !== "SwitchoverBegun") return Effect.fail(violation("device data", message._tag))
          log.enter("drain")
          return Effect.succeed("switchover" as const)
        }),
      acknowledge: (i) => located(send(writer, { _tag: "InitialDataReceived", resumeEstimateMs }, i)),
      located,
      concurrency: typeof o.ioConcurrency === "number" ? o.ioConcurrency : devices.length,
      queueDepth: Math.max(1, Math.floor(options.queueDepth ?? 4)),
      emit,
      now
    })
    manifest.devices.forEach((d, i) => {
      const t = loaded[i]
      if (t !== undefined) s.totals.set(d.id, t)
      s.bytes += (t?.precopyBytes ?? 0) + (t?.stopCopyBytes ?? 0)
    })

    // Validate: RESUMING → STOP checks every device's data; then the caller's own preparation.
    log.enter("validate")
    yield* located(send(writer, { _tag: "Busy", step: "validate", done: false }))
    const validateStart = now()
    yield* located(stop(runtime, transitionOptions(o, "destination", "validate", timings)))
    s.validateMs = roundMs(now() - validateStart)
    if (options.beforeVote !== undefined)
      yield* options.beforeVote.pipe(Effect.mapError((e) => fault(new PreparationFailed({ reason: e.message }))))

    // Vote, then wait for the decision: never resume without COMMIT. The vote may reach the
    // source even when its write fails (the channel can close right after taking it), so from
    // the first byte of the vote on, this side is in doubt until it learns the decision.
    log.enter("commit")
    s.voted = true
    const decision = yield* Effect.exit(
      located(send(writer, { _tag: "Prepared", validateMs: s.validateMs })).pipe(
        Effect.andThen(nextFrame("the commit decision")),
        Effect.flatMap((frame) => messageOf(frame, "the commit decision"))
      )
    )
    if (Exit.isFailure(decision)) {
      const lost = Cause.findErrorOption(decision.cause)
      if (Option.isNone(lost) || lost.value.cause._tag === "PeerAborted") return yield* Effect.failCause(decision.cause)
      yield* decideFromJournal(migration, lost.value)
    } else if (decision.value._tag !== "Committed") {
      yield* decideFromJournal(migration, violation("the commit decision", decision.value._tag))
    }
    s.decided = true
    s.committed = true

    // Resume: STOP → quiesced → RUNNING in group order. Committed, the group is this side's to
    // run: a failed attempt rolls back to STOP (no reset) and is tried again.
    log.enter("resume")
    const resumeStart = now()
    yield* resumeCommitted
    s.resumeMs = roundMs(now() - resumeStart)
    emit({ _tag: "Resumed", side: "destination", resumeMs: s.resumeMs, at: now() })
    return yield* finish
  })

  /** Resumes a committed group, trying again after a failed attempt; never resets a device. */
  const resumeCommitted: Effect.Effect<void, SessionFault> = Effect.gen(function* () {
    const attempts = Math.max(1, Math.floor(options.resumeAttempts ?? 3))
    let last: { readonly message: string } | undefined
    for (let attempt = 1; attempt <= attempts; attempt++) {
      const tried = yield* Effect.exit(resume(runtime, transitionOptions(o, "destination", "resume", timings)))
      if (Exit.isSuccess(tried)) return
      const error = Cause.findErrorOption(tried.cause)
      if (Option.isNone(error)) return yield* located(Effect.failCause(tried.cause))
      last = error.value
      if (attempt < attempts)
        emit({
          _tag: "Warning",
          side: "destination",
          reason: `resume attempt ${attempt} failed: ${last.message}; trying again`,
          at: now()
        })
    }
    const reason = last?.message ?? "the resume failed"
    s.givenBack = yield* giveBack(reason)
    return yield* fault(
      new ResumeIncomplete({ migration: s.migration ?? "", attempts, reason, givenBack: s.givenBack })
    )
  })

  /**
   * Offers a committed group that cannot resume back to the source. It counts as given back only
   * once the source's journal records the renunciation (written here when this side can reach the
   * journal, or confirmed by the source's `Renounced`): until then the source must not run, and
   * this side keeps the state.
   */
  const giveBack = (reason: string): Effect.Effect<boolean> =>
    Effect.gen(function* () {
      const migration = s.migration ?? ""
      const journal = options.decisionJournal
      const recorded = journal !== undefined && Exit.isSuccess(yield* Effect.exit(journal.renounce(migration, reason)))
      const writer = s.writer
      if (writer === undefined) return recorded
      const offer: SessionMessage = { _tag: "Aborted", phase: "resume", tag: "ResumeIncomplete", reason }
      const told = yield* Effect.exit(send(writer, offer))
      if (recorded || Exit.isFailure(told)) return recorded
      for (;;) {
        const next = yield* Effect.exit(reader.next)
        if (Exit.isFailure(next) || Option.isNone(next.value)) return false
        const frame = next.value.value
        if (frame._tag !== "Control") continue
        const message = decodeMessage(frame)
        if (Result.isSuccess(message) && message.success._tag === "Renounced") return true
      }
    })

  /** The channel was lost after the vote: the source's journal decides, if this side can read it. */
  const decideFromJournal = (migration: string, lost: SessionFault): Effect.Effect<void, SessionFault> =>
    Effect.gen(function* () {
      const journal = options.decisionJournal
      if (journal === undefined)
        return yield* fault(
          new CommitInDoubt({ migration, reason: `${lost.cause.message}; no journal to read the decision from` })
        )
      const decided = yield* Effect.exit(
        journal.decide(migration, "abort", `the destination lost the source: ${lost.cause.message}`)
      )
      if (Exit.isFailure(decided)) {
        const why = Option.match(Cause.findErrorOption(decided.cause), {
          onNone: () => "the journal could not be read",
          onSome: (e) => e.message
        })
        return yield* fault(new CommitInDoubt({ migration, reason: `${lost.cause.message}; ${why}` }))
      }
      emit({ _tag: "DecisionRecorded", side: "destination", migration, decision: decided.value, at: now() })
      s.decided = true
      if (decided.value === "aborted") return yield* lost
      s.fromJournal = true
    })

  /** After RUNNING: confirm, end this direction, and read the source's stream end. */
  const finish: Effect.Effect<DestinationSummary> = Effect.gen(function* () {
    const warn = (reason: string) => emit({ _tag: "Warning", side: "destination", reason, at: now() })
    const writer = s.writer
    if (writer !== undefined) {
      const confirmed = yield* Effect.exit(
        send(writer, { _tag: "Resumed", resumeMs: s.resumeMs }).pipe(Effect.andThen(writer.end))
      )
      if (Exit.isFailure(confirmed))
        warn(`the source could not be told that the group runs: ${describeCause(confirmed.cause)}`)
    }
    if (!s.fromJournal) {
      const rest = yield* Effect.exit(readToEnd)
      if (Exit.isFailure(rest)) warn(`the source's stream did not end cleanly: ${describeCause(rest.cause)}`)
    }
    yield* transport.close
    log.end()
    const summary: DestinationSummary = {
      side: "destination",
      migration: s.migration ?? "",
      bytes: s.bytes,
      devices: Object.fromEntries(
        ids.map((id): [string, DeviceTotals] => [id, s.totals.get(id) ?? { precopyBytes: 0, stopCopyBytes: 0 }])
      ),
      phases: log.durations,
      totalMs: roundMs(now() - startedAt),
      states: yield* readStates(runtime),
      validateMs: s.validateMs,
      resumeMs: s.resumeMs,
      decidedFromJournal: s.fromJournal
    }
    emit({ _tag: "Completed", summary, at: now() })
    return summary
  })

  /** Reads until the source's stream ends (its totals checked by the decoder). */
  const readToEnd: Effect.Effect<void, MigrationCause> = Effect.gen(function* () {
    for (;;) {
      const frame = yield* reader.next
      if (Option.isNone(frame)) return
    }
  })

  /** The source's `Aborted`, if it is among what is left to read (undefined at the end or on an error). */
  const abortedBySource: Effect.Effect<PeerAborted | undefined> = Effect.gen(function* () {
    for (;;) {
      const next = yield* Effect.option(reader.next)
      if (Option.isNone(next) || Option.isNone(next.value)) return undefined
      const frame = next.value.value
      if (frame._tag !== "Control") continue
      const decoded = decodeMessage(frame)
      if (Result.isSuccess(decoded) && decoded.success._tag === "Aborted") {
        const { phase, tag, reason } = decoded.success
        return new PeerAborted({ peer: "source", phase, tag, reason })
      }
    }
  })

  /** Reset what was touched, park it in STOP, and only then tell the source: never both running. */
  const recover = (failure: SessionFault): Effect.Effect<never, MigrationFailed> =>
    Effect.gen(function* () {
      let { cause, phase } = failure
      const warn = (reason: string) => emit({ _tag: "Warning", side: "destination", reason, at: now() })
      // A channel failure is often the echo of the source aborting (it says why, then closes):
      // read what it sent, briefly, and prefer its own reason.
      if (isChannelCause(cause)) {
        const told = yield* abortedBySource.pipe(Effect.timeoutOption(o.closeGraceMs))
        if (Option.isSome(told) && told.value !== undefined) {
          cause = told.value
          phase = told.value.phase
        }
      }
      // Stopped after the vote without learning the decision (interrupted, say): never reset a
      // group the source may have committed to; the journal settles it, or the devices wait.
      if (s.voted && !s.decided && cause._tag !== "PeerAborted" && cause._tag !== "CommitInDoubt") {
        const migration = s.migration ?? ""
        const settled = yield* Effect.exit(decideFromJournal(migration, failure))
        const doubt = Exit.isFailure(settled) ? Option.getOrUndefined(Cause.findErrorOption(settled.cause)) : undefined
        if (doubt?.cause._tag === "CommitInDoubt") cause = doubt.cause
        else if (Exit.isSuccess(settled))
          cause = new CommitInDoubt({
            migration,
            reason: `${cause.message}; the source's journal says COMMIT: this group must be resumed`
          })
      }
      const inDoubt = cause._tag === "CommitInDoubt"
      const touchedBefore = touched
      // In doubt, the validated devices wait in STOP: neither reset nor resumed until the journal is read.
      // Committed, they hold the only state that may run: left where they are, required RUNNING.
      const outcome: Recovered = !touchedBefore
        ? yield* untouched(runtime)
        : s.committed && !s.givenBack
          ? yield* leftInPlace(runtime, "RUNNING", cause.message)
          : inDoubt
            ? yield* leftInPlace(runtime, "STOP")
            : yield* recoverGroup(runtime, {
                policy: o.errorPolicy,
                home: "STOP",
                resetEvery: true,
                resetTimeoutMs: o.arcTimeoutMs,
                transition: transitionOptions(o, "destination", "park", undefined)
              })
      const states = outcome.states
      const recovered = outcome.complete
      emit({ _tag: "Recovered", side: "destination", ok: recovered, states, at: now() })
      const writer = s.writer
      // After COMMIT there is nothing to abort: the group was offered back (`giveBack`), or the source
      // only hears that it does not run.
      const tellSource = cause._tag !== "PeerAborted" && cause._tag !== "HandshakeRefused" && !inDoubt && !s.committed
      if (writer !== undefined && tellSource) {
        const told = yield* Effect.exit(send(writer, abortMessage(phase, cause)).pipe(Effect.andThen(writer.end)))
        if (Exit.isFailure(told)) warn(`the source could not be told: ${describeCause(told.cause)}`)
      } else if (writer !== undefined) {
        const ended = yield* Effect.exit(writer.end)
        if (Exit.isFailure(ended)) warn(`could not end the stream to the source: ${describeCause(ended.cause)}`)
      }
      // Let the source hang up first, so nothing it sent is cut off by our close.
      // Whatever it still sends is of no use now; only its hang-up is awaited, briefly.
      yield* readToEnd.pipe(Effect.ignore, Effect.timeoutOption(o.closeGraceMs))
      yield* transport.close
      log.end()
      return yield* new MigrationFailed({
        side: "destination",
        phase,
        origin: originOf("destination", cause),
        cause,
        migration: s.migration,
        ...recoveryFields(touchedBefore, outcome)
      })
    })

  return yield* Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const outcome = yield* Effect.exit(restore(work))
      if (Exit.isSuccess(outcome)) return outcome.value
      const failure = Option.getOrElse(
        Cause.findErrorOption(outcome.cause),
        () => new SessionFault({ cause: new MigrationInterrupted(), phase: log.phase })
      )
      return yield* recover(failure)
    })
  )
})
