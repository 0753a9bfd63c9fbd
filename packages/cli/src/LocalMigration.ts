import { writeFile } from "node:fs/promises"
import { DeviceError } from "@lockstep/device"
import {
  causeTag,
  type DestinationSummary,
  Journal,
  type MigrationCause,
  MigrationChannels,
  type MigrationFailed,
  migrateDestination,
  migrateSource,
  type SourceSummary
} from "@lockstep/migration"
import { MemoryTransport } from "@lockstep/stream"
import type { Telemetry } from "@lockstep/telemetry"
import { hasVfioDevice } from "@lockstep/vfio"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { openEventLog } from "./EventsFile.js"
import { formatBytes, formatMs, formatStates, plural } from "./Format.js"
import { makeMigrationTimeline, observedOf, recordedGroupOf } from "./MigrationTimeline.js"
import { allSinks, tracedDevices } from "./Observability.js"
import { refuseNotMigratable } from "./Refusal.js"
import type { Scenario } from "./Scenario.js"
import { destinationOptionsOf, sourceOptionsOf } from "./ScenarioOptions.js"
import { openSide, type Side, sideStates, violationsOfSide } from "./Sides.js"
import { type StopSignal, settled, signalExitCode, untilSignal } from "./Signals.js"
import { simCompatibility } from "./SimulatedSide.js"
import { downtimeText } from "./SourceReport.js"

/** How `migrate --local` reports. */
export interface LocalOptions {
  readonly json: boolean
  readonly timeline: Option.Option<string>
  /** Write the events to this file (`--events`). */
  readonly events?: string | undefined
  /** Trace the migration (`--otlp`). */
  readonly telemetry?: Telemetry["Service"] | undefined
}

const failureOf = (exit: Exit.Exit<unknown, MigrationFailed>): MigrationFailed | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined

/** The device and errno a cause comes down to, when a device refused something. */
const deviceFault = (cause: MigrationCause): { readonly device: string; readonly code: string } | undefined => {
  const failed: unknown = cause._tag === "TransitionFailed" ? cause.cause : cause
  // A device error's fields are those of its reason (`SessionFailed`, `ArcFailed`, …).
  const inner: unknown = failed instanceof DeviceError ? failed.reason : failed
  return typeof inner === "object" &&
    inner !== null &&
    "device" in inner &&
    typeof inner.device === "string" &&
    "code" in inner &&
    typeof inner.code === "string"
    ? { device: inner.device, code: inner.code }
    : undefined
}

/** The error to report: the side where the failure began (its own cause), else the source's. */
const primary = (source: MigrationFailed | undefined, destination: MigrationFailed | undefined) =>
  [source, destination].find((e) => e !== undefined && e.origin === e.side) ?? source ?? destination

const errorJson = (error: MigrationFailed) => ({
  _tag: error._tag,
  message: error.message,
  side: error.side,
  phase: error.phase,
  origin: error.origin,
  cause: causeTag(error.cause),
  ...deviceFault(error.cause)
})

/** How each side ended after a failure: what the rollback did. */
const rollbackJson = (source: MigrationFailed | undefined, destination: MigrationFailed | undefined) => ({
  source:
    source === undefined
      ? { recovered: false, problem: "the source did not fail" }
      : {
          recovered: source.recovered,
          ...(source.recoveryProblem === undefined ? {} : { problem: source.recoveryProblem })
        },
  destination:
    destination === undefined
      ? { recovered: false, problem: "the destination did not fail" }
      : {
          recovered: destination.recovered,
          reset: destination.cause._tag !== "CommitInDoubt" && destination.phase !== "handshake",
          ...(destination.recoveryProblem === undefined ? {} : { problem: destination.recoveryProblem })
        }
})

const compatibilityOf = (sides: ReadonlyArray<Side>) => {
  const simulated = sides.flatMap((s) => (s._tag === "Simulated" ? [s.runtime] : []))
  return simulated.length === sides.length ? simCompatibility(simulated) : undefined
}

const summaryText = (s: SourceSummary, d: DestinationSummary | undefined): string =>
  [
    `migrated ${plural(Object.keys(s.devices).length, "device")} in ${plural(s.rounds, "pre-copy round")} (switchover: ${s.switchover})`,
    `  streamed ${formatBytes(s.bytes)}, ${downtimeText(s)}${d === undefined ? "" : ` (validate ${formatMs(d.validateMs)}, resume ${formatMs(d.resumeMs)})`}`
  ].join("\n")

/** How both sides ended, as the report states it. */
interface LocalEnd {
  readonly final: { readonly source: Record<string, string>; readonly destination: Record<string, string> }
  /** Both sides' fabrics checked the P2P invariant (simulated devices). */
  readonly checked: boolean
  readonly violationCount: number
  readonly interrupted: StopSignal | undefined
}

/** Reports a migration both sides completed; P2P violations seen make it a failure all the same. */
const reportMigrated = (
  s: SourceSummary,
  d: DestinationSummary,
  end: LocalEnd,
  json: boolean
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    const { final, checked, violationCount } = end
    yield* Console.log(
      json
        ? JSON.stringify({
            ok: true,
            ...(checked ? { violations: violationCount } : {}),
            downtimeMs: s.downtimeMs,
            rounds: s.rounds,
            bytes: s.bytes,
            final
          })
        : [
            summaryText(s, d),
            `  source:      ${formatStates(final.source)}`,
            `  destination: ${formatStates(final.destination)}`
          ].join("\n")
    )
    if (checked && violationCount > 0)
      return yield* new CliFailure({ text: `the simulation saw ${violationCount} P2P violations`, exitCode: 1 })
  })

/** Reports a failed (or interrupted) migration: the primary error, each side's rollback, the final states. */
const reportFailed = (
  sourceError: MigrationFailed | undefined,
  destinationError: MigrationFailed | undefined,
  end: LocalEnd,
  json: boolean
): Effect.Effect<never, CliFailure> =>
  Effect.gen(function* () {
    const { final, checked, violationCount, interrupted } = end
    const error = primary(sourceError, destinationError)
    yield* json
      ? Console.log(
          JSON.stringify({
            ok: false,
            ...(interrupted === undefined ? {} : { interrupted }),
            ...(error === undefined ? {} : { error: errorJson(error) }),
            rollback: rollbackJson(sourceError, destinationError),
            ...(checked ? { violations: violationCount } : {}),
            final
          })
        )
      : Console.error(
          [
            ...(interrupted === undefined
              ? []
              : [`lockstep: interrupted by ${interrupted}: the migration was cancelled`]),
            `lockstep: ${error?.message ?? "the migration was interrupted"}`,
            ...(sourceError !== undefined && sourceError !== error ? [`lockstep: ${sourceError.message}`] : []),
            ...(destinationError !== undefined && destinationError !== error
              ? [`lockstep: ${destinationError.message}`]
              : [])
          ].join("\n")
        )
    return yield* new CliFailure({
      text: "the migration failed",
      exitCode: interrupted === undefined ? 1 : signalExitCode[interrupted],
      quiet: true
    })
  })

/**
 * `migrate --local`: both sides of a migration in this process, joined by an in-memory channel,
 * with the same sessions, journal protocol and recovery as over TCP, on real time. This is a
 * same-host migration as QEMU tests it: the scenario's source devices into its destination
 * devices (for kernel devices, `destination.devices` names the destination's own).
 */
export const runLocal = (scenario: Scenario, options: LocalOptions): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    if (!hasVfioDevice(scenario.documents.source)) yield* refuseNotMigratable(scenario, "source", options.json)
    const source = yield* openSide(scenario, "source")
    const destination = yield* openSide(scenario, "destination")
    const title = `lockstep migrate --local ${scenario.file}`
    const groups = {
      source: recordedGroupOf(source.runtime.group),
      destination: recordedGroupOf(destination.runtime.group)
    }
    const timeline = Option.isSome(options.timeline)
      ? makeMigrationTimeline(groups.source, groups.destination)
      : undefined
    const events = options.events === undefined ? undefined : yield* openEventLog(options.events, { title, ...groups })
    const journal = Journal.memory()
    const compatibility = compatibilityOf([source, destination])
    const [a, b] = yield* MemoryTransport.pair()
    const channels = yield* MigrationChannels.memory()
    const m = scenario.migration
    const trace = options.telemetry?.trace({
      run: title,
      devices: { source: tracedDevices(source.runtime.group), destination: tracedDevices(destination.runtime.group) }
    })
    const onEvent = allSinks(timeline?.onEvent, events?.onEvent, trace?.onEvent)
    // Each side's end, however it ends: a signal interrupts both sides, and each rolls back.
    let sourceExit: Exit.Exit<SourceSummary, MigrationFailed> = Exit.interrupt()
    let destinationExit: Exit.Exit<DestinationSummary, MigrationFailed> = Exit.interrupt()
    const ended = yield* untilSignal(
      Effect.all(
        [
          settled(
            migrateSource(source.runtime, a, {
              ...sourceOptionsOf(m),
              journal,
              compatibility,
              onEvent,
              openChannel: channels.source.open
            }),
            undefined,
            (exit) => {
              sourceExit = exit
            }
          ),
          settled(
            migrateDestination(destination.runtime, b, {
              ...destinationOptionsOf(m),
              decisionJournal: journal,
              compatibility,
              onEvent,
              acceptChannel: channels.destination.open
            }),
            undefined,
            (exit) => {
              destinationExit = exit
            }
          )
        ],
        { concurrency: 2, discard: true }
      ),
      "both groups' devices may be left between their states (simulated devices end with this process; kernel devices keep theirs)"
    )
    trace?.end()
    const interrupted = ended._tag === "Interrupted" ? ended.signal : undefined
    const final = { source: yield* sideStates(source), destination: yield* sideStates(destination) }
    const violations = [yield* violationsOfSide(source), yield* violationsOfSide(destination)]
    const checked = violations.every((v) => v !== undefined)
    const violationCount = violations.reduce<number>((n, v) => n + (v ?? 0), 0)
    const observed = {
      source: source._tag === "Simulated" ? observedOf(source.runtime.fabric) : undefined,
      destination: destination._tag === "Simulated" ? observedOf(destination.runtime.fabric) : undefined
    }
    if (events !== undefined) yield* events.close(observed)
    if (timeline !== undefined && Option.isSome(options.timeline)) {
      const file = options.timeline.value
      const svg = timeline.render(title, observed)
      yield* Effect.tryPromise({
        try: () => writeFile(file, svg),
        catch: (cause) =>
          invalidInput(`--timeline: cannot write ${file}: ${cause instanceof Error ? cause.message : String(cause)}`)
      })
    }
    const end: LocalEnd = { final, checked, violationCount, interrupted }
    return yield* Exit.isSuccess(sourceExit) && Exit.isSuccess(destinationExit)
      ? reportMigrated(sourceExit.value, destinationExit.value, end, options.json)
      : reportFailed(failureOf(sourceExit), failureOf(destinationExit), end, options.json)
  }).pipe(Effect.scoped)
