import {
  type DestinationSummary,
  Journal,
  type MigrationFailed,
  migrateDestination,
  migrateSource,
  Phases,
  type SourceSummary
} from "@lockstep/migration"
import { compareMemory, runOnVirtualTime } from "@lockstep/sim"
import { MemoryTransport } from "@lockstep/stream"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { TestClock } from "effect/testing"
import { CliFailure } from "./CliFailure.js"
import {
  destinationOptionsOf,
  formatBytes,
  formatMs,
  formatStates,
  loadScenario,
  type Scenario,
  simCompatibility,
  simulateSide,
  sourceOptionsOf,
  statesOf,
  violationsOf
} from "./Scenario.js"

/** The bandwidth a simulation assumes unless its scenario sets one: on virtual time an unlimited channel would move data in no time. */
const simulatedBandwidth = 1024 ** 3

/** How a simulated migration ended. */
interface Simulation {
  readonly source: Exit.Exit<SourceSummary, MigrationFailed>
  readonly destination: Exit.Exit<DestinationSummary, MigrationFailed>
  /** Every destination device equalled its source byte for byte when the destination voted to commit. */
  readonly verified: boolean
  readonly violations: { readonly source: number; readonly destination: number }
  readonly final: { readonly source: Record<string, string>; readonly destination: Record<string, string> }
}

/** Runs both sides of the scenario over an in-memory channel, on the current Clock. */
const simulate = (scenario: Scenario): Effect.Effect<Simulation, CliFailure> =>
  Effect.gen(function* () {
    const source = yield* simulateSide(scenario, "source")
    const destination = yield* simulateSide(scenario, "destination")
    const journal = Journal.memory()
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
    const m = scenario.migration
    const [sourceExit, destinationExit] = yield* Effect.all(
      [
        Effect.exit(
          migrateSource(source, a, {
            ...sourceOptionsOf(m),
            bandwidthLimit: m.bandwidthLimit ?? simulatedBandwidth,
            journal,
            compatibility
          })
        ),
        Effect.exit(
          migrateDestination(destination, b, {
            ...destinationOptionsOf(m),
            decisionJournal: journal,
            compatibility,
            beforeVote: verify
          })
        )
      ],
      { concurrency: 2 }
    )
    return {
      source: sourceExit,
      destination: destinationExit,
      verified: comparisons.length === source.devices.size && comparisons.every((same) => same),
      violations: { source: yield* violationsOf(source), destination: yield* violationsOf(destination) },
      final: { source: yield* statesOf(source), destination: yield* statesOf(destination) }
    }
  })

/** The error to report: the source's, unless only the destination failed. */
const errorOf = (run: Simulation): MigrationFailed | undefined => {
  const failed = (exit: Exit.Exit<unknown, MigrationFailed>) =>
    Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined
  return failed(run.source) ?? failed(run.destination)
}

const errorJson = (error: MigrationFailed) => ({
  _tag: error._tag,
  message: error.message,
  side: error.side,
  phase: error.phase,
  origin: error.origin,
  cause: error.cause._tag
})

const formatRun = (run: Simulation): string => {
  const violations = run.violations.source + run.violations.destination
  const tail = [
    `  P2P violations: ${violations} (source ${run.violations.source}, destination ${run.violations.destination})`,
    `  source:      ${formatStates(run.final.source)}`,
    `  destination: ${formatStates(run.final.destination)}`
  ]
  const error = errorOf(run)
  if (error !== undefined || !Exit.isSuccess(run.source)) {
    return [`migration failed in ${error?.phase ?? "?"}: ${error?.message ?? "interrupted"}`, ...tail].join("\n")
  }
  const s = run.source.value
  const precopy = Object.values(s.devices).reduce((n, d) => n + d.precopyBytes, 0)
  const estimate = s.estimate === undefined ? "" : `estimate ${formatMs(s.estimate.totalMs)}; `
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
    `migrated ${Object.keys(s.devices).length} devices in ${s.rounds} pre-copy round${s.rounds === 1 ? "" : "s"} (switchover: ${s.switchover})`,
    `  streamed ${formatBytes(s.bytes)} (pre-copy ${formatBytes(precopy)}, stop-copy ${formatBytes(s.bytes - precopy)})`,
    `  downtime ${formatMs(s.downtimeMs)} (${estimate}${floor})`,
    run.verified
      ? "  verified: every destination device equals its source byte for byte"
      : "  NOT verified: a destination device differs from its source",
    `  phases: ${phases}`,
    ...tail,
    "  (virtual time: figures are deterministic for a scenario)"
  ].join("\n")
}

/** `lockstep simulate SCENARIO.json`: a whole migration between two simulated groups, on virtual time. */
export const simulateCommand = Command.make(
  "simulate",
  {
    file: Argument.String("SCENARIO.json").pipe(
      Argument.withDescription(
        'A group file with per-device "sim" parameters, plus optional "seed", "p2pWritesPerSecond", "faults" {"source"|"destination": {id: [fault…]}}, "destination" {"sim": {id: {…}}} and "migration" options'
      )
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON object: {"ok":true,"verified":true,"violations":0,"downtimeMs":…,"rounds":…,"bytes":…,"final":{"source":{…},"destination":{…}}}, or {"ok":false,"error":{"_tag","message",…},"violations":…,"final":…}'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const scenario = yield* loadScenario(config.file)
      const run = yield* runOnVirtualTime(simulate(scenario)).pipe(Effect.provide(TestClock.layer()))
      const violations = run.violations.source + run.violations.destination
      const error = errorOf(run)
      const ok = error === undefined && Exit.isSuccess(run.source) && Exit.isSuccess(run.destination)
      if (config.json) {
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
                  final: run.final
                }
              : {
                  ok: false,
                  ...(error === undefined ? {} : { error: errorJson(error) }),
                  violations,
                  final: run.final
                }
          )
        )
      } else {
        yield* Console.log(formatRun(run))
      }
      if (!ok) return yield* new CliFailure({ text: "the migration failed", exitCode: 1, quiet: true })
      if (!run.verified || violations > 0)
        return yield* new CliFailure({
          text: "the migration completed but the simulation saw it go wrong (state differs, or P2P violations)",
          exitCode: 1
        })
    })
).pipe(
  Command.withDescription(
    "Simulate a whole live migration: a source and a destination group of simulated devices (from the scenario's group, with its faults and options) joined by an in-memory channel, on virtual time, so downtime figures are deterministic. Prints the rounds, bytes, downtime and final states, verifies every destination device against its source byte for byte, and counts P2P violations. Exits 0 on success, 1 on a failed migration, 2 on invalid input."
  ),
  Command.withShortDescription("Simulate a live migration between two simulated groups."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} scenario.json`, description: "A readable summary" },
    { command: `${commandPath.join(" ")} scenario.json --json`, description: "One JSON object" }
  ])
)
