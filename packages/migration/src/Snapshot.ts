import {
  type FinalStates,
  type GroupRuntime,
  Migratability,
  prepareResume,
  reportedStates,
  resume,
  stop,
  transition
} from "@lockstep/coordinator"
import { type ByteSink, type ByteSource, type Frame, FrameReader, FrameWriter, type Manifest } from "@lockstep/stream"
import { Cause, Effect, Option } from "effect"
import { throttle } from "./Bandwidth.js"
import type { DeviceTotals } from "./Events.js"
import { transitionOptions, watchTouched } from "./GroupTransition.js"
import { checkManifest, manifestOf } from "./Handshake.js"
import { loadDevices, manifestDevices } from "./Loading.js"
import {
  HandshakeRefused,
  type MigrationCause,
  MigrationFailed,
  MigrationInterrupted,
  NotMigratable,
  ProtocolViolation
} from "./MigrationError.js"
import { type ResolvedSessionOptions, resolveSession, type SessionOptions } from "./Options.js"
import type { Side } from "./Phase.js"
import { PhaseLog } from "./PhaseLog.js"
import { recoverGroup, recoveryFields, untouched } from "./Recovery.js"
import { recovering } from "./RecoveryGuard.js"
import { clockNow } from "./SessionClock.js"
import { faultIn, locatedIn, originOf, SessionFault } from "./SessionFault.js"
import { switchoverAndDrain } from "./Switchover.js"
import { drainDevice } from "./Transfer.js"

/** Options of {@link saveGroup}. */
export interface SaveOptions extends SessionOptions {
  /** Largest read from a device, and largest chunk frame. Default 256 KiB. */
  readonly chunkBytes?: number | undefined
  /** The most bytes per second written. Default: no limit. */
  readonly bandwidthLimit?: number | undefined
  /** Where the group is left once saved: stopped with its state (`STOP_COPY`, the default) or running again. */
  readonly leave?: "STOP_COPY" | "RUNNING" | undefined
}

/** What {@link saveGroup} wrote. */
export interface SaveSummary {
  readonly bytes: number
  readonly devices: Readonly<Record<string, number>>
  /** From the first stop-copy arc to the last device's end marker, in ms. */
  readonly stoppedMs: number
  readonly states: FinalStates
}

/**
 * Saves a group's state into a byte sink (a file, say): the same stream a migration sends, with
 * no pre-copy and no peer. The group goes to STOP_COPY through the quiescent states, each device
 * is drained as soon as it gets there, and the stream is ended with its totals. On failure the
 * group is rolled back to RUNNING.
 */
export const saveGroup: (
  runtime: GroupRuntime,
  sink: ByteSink,
  options?: SaveOptions
) => Effect.Effect<SaveSummary, MigrationFailed> = Effect.fn("Migration.save")(function* (
  runtime: GroupRuntime,
  sink: ByteSink,
  options: SaveOptions = {}
) {
  const watch = watchTouched(options)
  const o = resolveSession(watch.options)
  const now = yield* clockNow
  const log = new PhaseLog("source", o.onEvent, now)
  const fault = (cause: MigrationCause) => faultIn(log, cause)
  const located = locatedIn(log)
  const ids = runtime.group.devices.map((d) => d.id)
  const chunkBytes = Math.max(1, Math.floor(options.chunkBytes ?? 256 * 1024))
  const pace = throttle(options.bandwidthLimit ?? Number.POSITIVE_INFINITY)
  const sent = ids.map(() => 0)

  const work = Effect.gen(function* () {
    const report = Migratability.check(runtime.group)
    if (!report.migratable) return yield* fault(new NotMigratable({ side: "source", blockers: report.blockers }))
    const devices = yield* manifestOf(runtime, o.compatibility)
    const writer = yield* located(FrameWriter.make(sink, { chunkBytes }))
    yield* located(writer.manifest(devices))
    log.enter("switchover")
    const switched = yield* located(
      switchoverAndDrain({
        runtime,
        options: (hook) => transitionOptions(o, "source", "enterStopCopy", undefined, hook),
        limit: o.ioConcurrency,
        drain: (i, stopping) =>
          Effect.gen(function* () {
            const device = runtime.devices.get(ids[i] ?? "")
            if (device === undefined) return
            sent[i] = yield* drainDevice(device, i, writer, pace, chunkBytes, stopping)
          }),
        onSwitched: () => log.enter("drain")
      })
    )
    const first = switched.firstArcAt
    const end = yield* located(writer.end)
    const stoppedMs = now() - (first ?? now())
    if (options.leave === "RUNNING")
      yield* located(transition(runtime, "RUNNING", transitionOptions(o, "source", "resume", undefined)))
    log.end()
    return {
      bytes: end.bytes,
      devices: Object.fromEntries(ids.map((id, i) => [id, sent[i] ?? 0])),
      stoppedMs,
      states: yield* reportedStates(runtime)
    } satisfies SaveSummary
  })

  return yield* recovering(work, (cause) =>
    snapshotFailed({ runtime, o, log, now, touched: watch.touched(), cause, side: "source" })
  )
})

/** Options of {@link restoreGroup}. */
export interface RestoreOptions extends SessionOptions {
  /** Resume the group to RUNNING once its data is validated (default), or leave it validated in STOP. */
  readonly resume?: boolean | undefined
}

/** What {@link restoreGroup} loaded. */
export interface RestoreSummary {
  readonly bytes: number
  readonly devices: Readonly<Record<string, DeviceTotals>>
  readonly states: FinalStates
}

/**
 * Restores a saved stream (from {@link saveGroup}, or any stream without control frames) into
 * a group: the manifest is checked against the group before any device is touched, every device
 * goes to RESUMING, takes its data, validates (→ STOP), and resumes unless told not to. On
 * failure the devices are reset and parked in STOP.
 */
export const restoreGroup: (
  runtime: GroupRuntime,
  source: ByteSource,
  options?: RestoreOptions
) => Effect.Effect<RestoreSummary, MigrationFailed> = Effect.fn("Migration.restore")(function* (
  runtime: GroupRuntime,
  source: ByteSource,
  options: RestoreOptions = {}
) {
  const watch = watchTouched(options)
  const o = resolveSession(watch.options)
  const now = yield* clockNow
  const log = new PhaseLog("destination", o.onEvent, now)
  const fault = (cause: MigrationCause) => faultIn(log, cause)
  const located = locatedIn(log)
  const reader = yield* FrameReader.make(source)
  const nextFrame: Effect.Effect<Frame, SessionFault> = located(reader.next).pipe(
    Effect.flatMap((frame) =>
      Option.isSome(frame)
        ? Effect.succeed(frame.value)
        : Effect.fail(fault(new ProtocolViolation({ expected: "more frames", got: "the end of the stream" })))
    )
  )

  const work = Effect.gen(function* () {
    const first = yield* nextFrame
    if (first._tag !== "Manifest")
      return yield* fault(new ProtocolViolation({ expected: "the manifest", got: `a ${first._tag} frame` }))
    const manifest: Manifest = first
    const refusals = yield* checkManifest(manifest, runtime, o.compatibility)
    if (refusals.length > 0) return yield* fault(new HandshakeRefused({ refusals }))
    log.enter("prepare")
    yield* located(prepareResume(runtime, transitionOptions(o, "destination", "prepareResume", undefined)))
    log.enter("drain")
    const devices = manifestDevices(manifest, runtime)
    const totals = yield* loadDevices({
      manifest,
      devices,
      nextFrame,
      onControl: (control) =>
        Effect.fail(fault(new ProtocolViolation({ expected: "device data", got: `a ${control.kind} control frame` }))),
      acknowledge: () => Effect.void,
      located,
      concurrency: typeof o.ioConcurrency === "number" ? o.ioConcurrency : devices.length,
      queueDepth: 4,
      emit: o.onEvent,
      now
    })
    const end = yield* nextFrame
    if (end._tag !== "StreamEnd")
      return yield* fault(new ProtocolViolation({ expected: "the stream end", got: `a ${end._tag} frame` }))
    const after = yield* located(reader.next)
    if (Option.isSome(after))
      return yield* fault(new ProtocolViolation({ expected: "nothing after the stream end", got: after.value._tag }))
    log.enter("validate")
    yield* located(stop(runtime, transitionOptions(o, "destination", "validate", undefined)))
    if (options.resume !== false) {
      log.enter("resume")
      yield* located(resume(runtime, transitionOptions(o, "destination", "resume", undefined)))
    }
    log.end()
    return {
      bytes: end.bytes,
      devices: Object.fromEntries(
        manifest.devices.map((d, i) => [d.id, totals[i] ?? { precopyBytes: 0, stopCopyBytes: 0 }])
      ),
      states: yield* reportedStates(runtime)
    } satisfies RestoreSummary
  })

  return yield* recovering(work, (cause) =>
    snapshotFailed({ runtime, o, log, now, touched: watch.touched(), cause, side: "destination" })
  )
})

/**
 * A snapshot failed: a group it touched is recovered (the saving side rolled back to RUNNING, the
 * restoring side reset and parked in STOP), and the one error answered.
 */
const snapshotFailed = (f: {
  readonly runtime: GroupRuntime
  readonly o: ResolvedSessionOptions
  readonly log: PhaseLog
  readonly now: () => number
  readonly touched: boolean
  readonly cause: Cause.Cause<SessionFault>
  readonly side: Side
}): Effect.Effect<never, MigrationFailed> =>
  Effect.gen(function* () {
    const { runtime, o, side } = f
    const failure = Option.getOrElse(
      Cause.findErrorOption(f.cause),
      () => new SessionFault({ cause: new MigrationInterrupted(), phase: f.log.phase })
    )
    const back = f.touched
      ? yield* recoverGroup(runtime, {
          policy: o.errorPolicy,
          home: side === "source" ? "RUNNING" : "STOP",
          resetEvery: side === "destination",
          resetTimeoutMs: o.arcTimeoutMs,
          transition: transitionOptions(o, side, side === "source" ? "rollback" : "park", undefined)
        })
      : yield* untouched(runtime)
    o.onEvent({ _tag: "Recovered", side, ok: back.complete, states: back.states, at: f.now() })
    f.log.end()
    return yield* new MigrationFailed({
      side,
      phase: failure.phase,
      origin: originOf(side, failure.cause),
      cause: failure.cause,
      migration: undefined,
      ...recoveryFields(f.touched, back)
    })
  })
