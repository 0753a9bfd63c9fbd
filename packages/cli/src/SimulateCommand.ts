import { writeFile } from "node:fs/promises"
import {
  type DestinationSummary,
  describeAssumedLengths,
  type EventSink,
  MigrationChannels,
  type MigrationEvent,
  MigrationEvents,
  type MigrationFailed,
  MigrationJournal,
  migrateDestination,
  migrateSource,
  Phases,
  type SourceSummary
} from "@lockstep/migration"
import { compareMemory, runOnVirtualTime, SimulationClock } from "@lockstep/sim"
import { MemoryTransport } from "@lockstep/stream"
import type { Telemetry } from "@lockstep/telemetry"
import { Cause, Console, Effect, Exit, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { openEventLog } from "./EventsFile.js"
import { failureJson } from "./FailureReport.js"
import { formatBytes, formatEstimateMs, formatMs, formatStates, plural } from "./Format.js"
import { makeMigrationTimeline, observedOf, recordedGroupOf } from "./MigrationTimeline.js"
import { eventsFlag, otlpFlag, tracedDevices, withTelemetry } from "./Observability.js"
import { progressLines } from "./Progress.js"
import { refuseNotMigratable } from "./Refusal.js"
import { loadScenario, type Scenario } from "./Scenario.js"
import { destinationOptionsOf, sourceOptionsOf } from "./ScenarioOptions.js"
import { type StopSignal, settled, signalExitCode, untilSignal } from "./Signals.js"
import { simCompatibility, simulateSide, statesOf, violationsOf } from "./SimulatedSide.js"
import { downtimeText, reinitText } from "./SourceReport.js"
import { checkTimelineFile } from "./TimelineFile.js"

/** The bandwidth a simulation assumes unless its scenario sets one: on virtual time an unlimited channel would move data in no time. */
const simulatedBandwidth = 1024 ** 3

/** How a simulated migration ended. */
interface Simulation {
  readonly source: Exit.Exit<SourceSummary, MigrationFailed>
  readonly destination: Exit.Exit<DestinationSummary, MigrationFailed>
  /** Every destination device equalled its source byte for byte when the destination voted to commit. */
  readonly verified: boolean
  readonly violations: { readonly source: number; readonly destination: number }
  /** P2P writes that landed on both fabrics: the traffic the invariant was checked against. */
  readonly writes: number
  readonly final: { readonly source: Record<string, string>; readonly destination: Record<string, string> }
  /** The signal that stopped the run (both sides were interrupted and rolled back), if one did. */
  readonly interrupted: StopSignal | undefined
  /** The timeline picture, when asked for. */
  readonly svg: string | undefined
}

/** What a simulation reports as it goes, besides its result. */
interface Observers {
  readonly onEvent?: EventSink | undefined
  /** The run's title: the timeline picture's, and the events file's. */
  readonly title: string
  /** Draw the timeline picture. */
  readonly timeline?: boolean | undefined
  /** Write the events to this file (`--events`). */
  readonly events?: string | undefined
  /** Trace the migration, under this name. */
  readonly telemetry?: { readonly service: Telemetry["Service"]; readonly run: string } | undefined
}

/** Runs both sides of the scenario over an in-memory channel, on the current Clock. */
const simulate = (scenario: Scenario, observers: Observers): Effect.Effect<Simulation, CliFailure> =>
  Effect.gen(function* () {
    const source = yield* simulateSide(scenario, "source")
    const destination = yield* simulateSide(scenario, "destination")
    const groups = { source: recordedGroupOf(source.group), destination: recordedGroupOf(destination.group) }
    const timeline = observers.timeline === true ? makeMigrationTimeline(groups.source, groups.destination) : undefined
    const events =
      observers.events === undefined
        ? undefined
        : yield* openEventLog(observers.events, { title: observers.title, ...groups })
    const trace = observers.telemetry?.service.trace({
      run: observers.telemetry.run,
      devices: { source: tracedDevices(source.group), destination: tracedDevices(destination.group) }
    })
    const onEvent = (event: MigrationEvent) => {
      observers.onEvent?.(event)
      timeline?.onEvent(event)
      events?.onEvent(event)
      trace?.onEvent(event)
    }
    const compatibility = simCompatibility([source, destination])
    const comparisons: Array<boolean> = []
    const verify = Effect.forEach([...source.devices.values()], (device) => {
      const twin = destination.devices.get(device.id)
      return twin === undefined
        ? Effect.succeed(false)
        : Effect.map(compareMemory(device, twin), (c) => c._tag === "Identical")
    }).pipe(
      Effect.tap((all) =>
        Effect.sync(() => {
          comparisons.push(...all)
        })
      ),
      Effect.asVoid
    )
    const [a, b] = yield* MemoryTransport.pair()
    const channels = yield* MigrationChannels.memory()
    const m = scenario.migration
    // Each side's end, recorded however it ends: a signal interrupts both sides, and each rolls back.
    const exits: {
      source: Exit.Exit<SourceSummary, MigrationFailed>
      destination: Exit.Exit<DestinationSummary, MigrationFailed>
    } = { source: Exit.interrupt(), destination: Exit.interrupt() }
    const both = Effect.all(
      [
        settled(
          migrateSource(source, a, {
            ...sourceOptionsOf(m),
            bandwidthLimit: m.bandwidthLimit ?? simulatedBandwidth,
            compatibility,
            openChannel: channels.source.open
          }),
          undefined,
          (exit) => {
            exits.source = exit
          }
        ),
        settled(
          migrateDestination(destination, b, {
            ...destinationOptionsOf(m),
            compatibility,
            beforeVote: verify,
            acceptChannel: channels.destination.open
          }),
          undefined,
          (exit) => {
            exits.destination = exit
          }
        )
      ],
      { concurrency: 2, discard: true }
    ).pipe(
      // One journal in memory for both sides (the destination reads the source's decisions), and one sink.
      Effect.provide(Layer.mergeAll(MigrationJournal.memory, MigrationEvents.layer(onEvent)))
    )
    const ended = yield* untilSignal(both, "nothing outside this process: the simulated devices end with it")
    trace?.end()
    const violations = { source: yield* violationsOf(source), destination: yield* violationsOf(destination) }
    const observed = { source: observedOf(source.fabric), destination: observedOf(destination.fabric) }
    if (events !== undefined) yield* events.close(observed)
    return {
      source: exits.source,
      destination: exits.destination,
      verified: comparisons.length === source.devices.size && comparisons.every((same) => same),
      violations,
      writes: source.fabric.writesLanded() + destination.fabric.writesLanded(),
      final: { source: yield* statesOf(source), destination: yield* statesOf(destination) },
      interrupted: ended._tag === "Interrupted" ? ended.signal : undefined,
      svg: timeline?.render(observers.title, observed)
    }
  })

const failureOf = (exit: Exit.Exit<unknown, MigrationFailed>): MigrationFailed | undefined =>
  Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined

/** The error to report: the source's, unless only the destination failed. */
const errorOf = (run: Simulation): MigrationFailed | undefined => failureOf(run.source) ?? failureOf(run.destination)

const devicesOf = (doc: unknown): ReadonlyArray<unknown> =>
  typeof doc === "object" && doc !== null && "devices" in doc && Array.isArray(doc.devices) ? doc.devices : []

const hasFaults = (device: unknown): boolean =>
  typeof device === "object" &&
  device !== null &&
  "sim" in device &&
  typeof device.sim === "object" &&
  device.sim !== null &&
  "faults" in device.sim &&
  Array.isArray(device.sim.faults) &&
  device.sim.faults.length > 0

/** Whether the scenario injects faults into a device of either side (then a failure is what it is about). */
const injectsFaults = (scenario: Scenario): boolean =>
  Object.values(scenario.documents).some((doc) => devicesOf(doc).some(hasFaults))

/**
 * What the user can do about a failed migration, as a labelled sentence: `to fix` when the
 * scenario has something to change, `why` when the failure is the fault the scenario injects.
 */
const adviceFor = (error: MigrationFailed, scenario: Scenario): string | undefined => {
  const tag = error.cause._tag === "PeerAborted" ? error.cause.tag : error.cause._tag
  switch (tag) {
    case "NotMigratable":
      return `to fix: give each device named the P2P flag, or declare a topology in which it writes into no peer (lockstep check ${scenario.file} lists every blocker)`
    case "HandshakeRefused":
      return "to fix: make the destination group offer the same devices as the source: the same ids, kinds and flags, and compatible state sizes"
    case "PrecopyLimitReached":
      return 'to fix: raise "migration.downtimeLimitMs" or "migration.bandwidthLimit", allow more pre-copy ("maxRounds", "maxPrecopyMs"), or set "onLimit": "switch" to switch over anyway'
    case "PeerBusy":
      return 'to fix: raise "migration.peerTimeoutMs" above the time the destination takes for that step (its slowest arc of it), or find out why its arcs are that slow'
    case "PeerSilent":
      return 'to fix: raise "migration.peerTimeoutMs", or find out why the peer stopped answering'
    default:
      return injectsFaults(scenario)
        ? 'why: the scenario injects this fault ("faults", or a device\'s "sim.faults"); without it the migration succeeds'
        : undefined
  }
}

/** How each side ended after a failure, as one sentence. */
const recoveryOf = (run: Simulation): string => {
  const errors = [failureOf(run.source), failureOf(run.destination)]
  if (errors.every((e) => e !== undefined && !e.touched)) return "none needed: nothing was touched on either side"
  const side = (exit: Exit.Exit<unknown, MigrationFailed>, name: "source" | "destination"): string => {
    const error = failureOf(exit)
    if (error === undefined) return Exit.isSuccess(exit) ? `the ${name} completed` : `the ${name} was interrupted`
    return error.recovery
  }
  return `${side(run.source, "source")}; ${side(run.destination, "destination")}`
}

const formatViolations = (run: Simulation): string =>
  `  P2P violations: ${run.violations.source + run.violations.destination} (source ${run.violations.source}, destination ${run.violations.destination}) among ${run.writes} P2P writes`

const formatRun = (run: Simulation, scenario: Scenario): string => {
  const tail = [
    formatViolations(run),
    `  source:      ${formatStates(run.final.source)}`,
    `  destination: ${formatStates(run.final.destination)}`
  ]
  const error = errorOf(run)
  if (error !== undefined || !Exit.isSuccess(run.source)) {
    const origin =
      error === undefined ? "" : error.origin === "channel" ? " (in the channel)" : ` (on the ${error.origin})`
    const advice = error === undefined || run.interrupted !== undefined ? undefined : adviceFor(error, scenario)
    const head =
      run.interrupted === undefined
        ? `migration failed in ${error?.phase ?? "?"}${origin}: ${error?.cause.message ?? "interrupted"}`
        : `interrupted by ${run.interrupted}${error === undefined ? "" : ` in ${error.phase}`}: the migration was cancelled`
    return [head, `  recovery: ${recoveryOf(run)}`, ...(advice === undefined ? [] : [`  ${advice}`]), ...tail].join(
      "\n"
    )
  }
  const s = run.source.value
  const precopy = Object.values(s.devices).reduce((n, d) => n + d.precopyBytes, 0)
  const estimate = s.estimate === undefined ? "" : `estimate ${formatEstimateMs(s.estimate.totalMs)}; `
  const assumed = describeAssumedLengths(s.assumedStopCopyLengths)
  const reinit = reinitText(s)
  const d = Exit.isSuccess(run.destination) ? run.destination.value : undefined
  const floor =
    d === undefined
      ? `switchover arcs' critical path ${formatMs(s.switchoverCriticalPathMs)}`
      : `arcs alone: switchover ${formatMs(s.switchoverCriticalPathMs)} + validate ${formatMs(d.validateMs)} + resume ${formatMs(d.resumeMs)} = ${formatMs(s.switchoverCriticalPathMs + d.validateMs + d.resumeMs)}`
  const phases = Phases.flatMap((p) => {
    const ms = s.phases[p]
    return ms === undefined ? [] : [`${p} ${formatMs(ms)}`]
  }).join(", ")
  return [
    `migrated ${plural(Object.keys(s.devices).length, "device")} in ${plural(s.rounds, "pre-copy round")} (switchover: ${s.switchover})`,
    `  streamed ${formatBytes(s.bytes)} (pre-copy ${formatBytes(precopy)}, stop-copy ${formatBytes(s.bytes - precopy)})`,
    `  ${downtimeText(s)} (${estimate}${floor})`,
    ...(assumed === undefined ? [] : [`  ${assumed}`]),
    ...(reinit === undefined ? [] : [`  ${reinit}`]),
    run.verified
      ? "  verified: every destination device equals its source byte for byte"
      : "  NOT verified: a destination device differs from its source",
    `  phases: ${phases}`,
    ...tail,
    "  (virtual time: figures are deterministic for a scenario)"
  ].join("\n")
}

/** How `simulate` and `demo` run a scenario. */
export interface ScenarioRunOptions {
  /** Print one JSON object instead of the readable summary (and no progress). */
  readonly json: boolean
  /** Write the timeline picture (SVG) to this file. */
  readonly timeline: Option.Option<string>
  /** The picture's title. Default: the command and the scenario file. */
  readonly title?: string | undefined
  /** `--events FILE`: write the migration's events there, one JSON object a line. */
  readonly events?: Option.Option<string> | undefined
  /** `--otlp URL`: export the migration's trace and metrics there (default: `OTEL_EXPORTER_OTLP_ENDPOINT`, else none). */
  readonly otlp?: Option.Option<string> | undefined
}

/**
 * Runs a scenario on virtual time and prints its outcome; progress goes to stderr when it is a
 * terminal and the output is readable text. Fails, after printing, when the migration failed
 * or the simulation saw it go wrong.
 */
export const runScenario = (scenario: Scenario, options: ScenarioRunOptions): Effect.Effect<Simulation, CliFailure> =>
  Effect.gen(function* () {
    if (Option.isSome(options.timeline)) yield* checkTimelineFile(options.timeline.value)
    yield* refuseNotMigratable(scenario, "source", options.json)
    const console = yield* Console.Console
    const showProgress = !options.json && process.stderr.isTTY === true
    const title = options.title ?? `lockstep simulate ${scenario.file}`
    // Telemetry exports on real time, around the run on virtual time.
    const run = yield* withTelemetry(options.otlp ?? Option.none(), (telemetry) =>
      runOnVirtualTime(
        simulate(scenario, {
          onEvent: showProgress ? progressLines((line) => console.error(line)) : undefined,
          title,
          timeline: Option.isSome(options.timeline),
          events: Option.getOrUndefined(options.events ?? Option.none()),
          telemetry: telemetry === undefined ? undefined : { service: telemetry, run: title }
        })
      ).pipe(Effect.provide(SimulationClock.layer))
    )
    const violations = run.violations.source + run.violations.destination
    const error = errorOf(run)
    const ok = error === undefined && Exit.isSuccess(run.source) && Exit.isSuccess(run.destination)
    if (Option.isSome(options.timeline) && run.svg !== undefined) {
      const file = options.timeline.value
      const svg = run.svg
      yield* Effect.tryPromise({
        try: () => writeFile(file, svg),
        catch: (cause) =>
          invalidInput(
            `--timeline: cannot write ${file}: ${cause instanceof Error ? cause.message : String(cause)}; name a file in a directory you can write to`
          )
      })
    }
    if (options.json) {
      const summary = Exit.isSuccess(run.source) ? run.source.value : undefined
      yield* Console.log(
        JSON.stringify(
          ok && summary !== undefined
            ? {
                ok: true,
                verified: run.verified,
                violations,
                downtimeMs: summary.downtimeMs,
                rounds: summary.rounds,
                bytes: summary.bytes,
                ...(summary.assumedStopCopyLengths.length === 0
                  ? {}
                  : { assumedStopCopyLengths: summary.assumedStopCopyLengths }),
                ...(summary.reinitialised.length === 0 ? {} : { reinitialised: summary.reinitialised }),
                ...(summary.switchoversWithdrawn === 0 ? {} : { switchoversWithdrawn: summary.switchoversWithdrawn }),
                final: run.final
              }
            : {
                ok: false,
                ...(run.interrupted === undefined ? {} : { interrupted: run.interrupted }),
                ...(error === undefined ? {} : { error: failureJson(error) }),
                violations,
                final: run.final
              }
        )
      )
    } else {
      yield* Console.log(formatRun(run, scenario))
      if (Option.isSome(options.timeline)) yield* Console.log(`  timeline: ${options.timeline.value}`)
    }
    if (run.interrupted !== undefined)
      return yield* new CliFailure({
        text: `interrupted by ${run.interrupted}`,
        exitCode: signalExitCode[run.interrupted],
        quiet: true
      })
    if (!ok) return yield* new CliFailure({ text: "the migration failed", exitCode: 1, quiet: true })
    if (!run.verified || violations > 0)
      return yield* new CliFailure({
        text: "the migration completed but the simulation saw it go wrong (state differs, or P2P violations)",
        exitCode: 1
      })
    return run
  })

/** The `--json` flag of `simulate` and `demo`. */
export const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDefault(false),
  Flag.withDescription(
    'Print one JSON object and no progress: {"ok":true,"verified":true,"violations":0,"downtimeMs":…,"rounds":…,"bytes":…,"final":{"source":{…},"destination":{…}}}, or {"ok":false,"error":{"_tag","message",…},"violations":…,"final":…}'
  )
)

/** The `--timeline FILE.svg` flag of `simulate` and `demo`. */
export const timelineFlag = Flag.String("timeline").pipe(
  Flag.withMetavar("FILE.svg"),
  Flag.withDescription(
    "Also draw the run as a timeline picture, a standalone SVG (the file name must end in .svg): a lane per device of both groups with its states and arcs, the phases, the downtime window, and any P2P violation"
  ),
  Flag.optional
)

/** `lockstep simulate SCENARIO.json`: a whole migration between two simulated groups, on virtual time. */
export const simulateCommand = Command.make(
  "simulate",
  {
    file: Argument.String("SCENARIO.json").pipe(
      Argument.withDescription(
        'A group file with per-device "sim" parameters, plus optional "seed", "p2pWritesPerSecond", "faults" {"source"|"destination": {id: [fault…]}}, "destination" {"sim": {id: {…}}} and "migration" options'
      )
    ),
    json: jsonFlag,
    timeline: timelineFlag,
    events: eventsFlag,
    otlp: otlpFlag
  },
  (config) =>
    Effect.gen(function* () {
      const scenario = yield* loadScenario(config.file)
      yield* runScenario(scenario, {
        json: config.json,
        timeline: config.timeline,
        events: config.events,
        otlp: config.otlp
      })
    })
).pipe(
  Command.withDescription(
    "Simulate a whole live migration: a source and a destination group of simulated devices (from the scenario's group, with its faults and options) joined by an in-memory channel, on virtual time, so downtime figures are deterministic. Prints the rounds, bytes, downtime and final states, verifies every destination device against its source byte for byte, and counts P2P violations; on a terminal, progress goes to stderr as it runs. SIGINT or SIGTERM cancels the migration: both sides roll back and the final states are printed. Exits 0 on success, 1 on a failed migration, 2 on invalid input, 130 or 143 when stopped by a signal."
  ),
  Command.withShortDescription("Simulate a live migration between two simulated groups."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} scenario.json`, description: "A readable summary" },
    { command: `${commandPath.join(" ")} scenario.json --json`, description: "One JSON object" },
    {
      command: `${commandPath.join(" ")} scenario.json --timeline run.svg`,
      description: "The summary, and the run drawn as a picture"
    }
  ])
)
