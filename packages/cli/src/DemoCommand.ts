import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { eventsFlag, otlpFlag } from "./Observability.js"
import { decodeScenario } from "./Scenario.js"
import { jsonFlag, runScenario, timelineFlag } from "./SimulateCommand.js"
import { checkTimelineFile } from "./TimelineFile.js"

/**
 * The flagship scenario, built in so that `lockstep demo` needs no file: eight GPUs that all
 * write into each other and a NIC that writes into two of them, with arc latencies, state sizes
 * and dirty rates in the proportions of real devices (sizes scaled down), P2P traffic on every
 * edge while the initiators run, and a 10 Gb/s channel. The same document as
 * `examples/multi-gpu/scenario.json` (the examples test keeps them equal).
 */
export const demoScenario = {
  devices: [
    // GPUs 0-7 differ only in how long they take to quiesce (3, 4, 5 ms in turn) and to enter
    // stop-copy (8, 9, 10, 11 ms in turn).
    ...Array.from({ length: 8 }, (_, i) => ({
      id: `gpu${i}`,
      kind: "pci",
      flags: ["STOP_COPY", "P2P", "PRE_COPY"],
      sim: {
        stateSize: 8388608,
        precopyInitialBytes: 6291456,
        dirtyBytesPerSecond: 4194304,
        arcLatenciesMs: {
          "RUNNING>PRE_COPY": 2,
          "PRE_COPY>PRE_COPY_P2P": 3 + (i % 3),
          "PRE_COPY_P2P>STOP_COPY": 8 + (i % 4),
          "STOP>RESUMING": 2,
          "RESUMING>STOP": 6,
          "STOP>RUNNING_P2P": 3,
          "RUNNING_P2P>RUNNING": 1
        },
        arcLatencyMs: 1
      }
    })),
    {
      id: "nic0",
      kind: "pci",
      flags: ["STOP_COPY", "P2P", "PRE_COPY"],
      sim: {
        stateSize: 1048576,
        precopyInitialBytes: 786432,
        dirtyBytesPerSecond: 1048576,
        arcLatenciesMs: {
          "PRE_COPY>PRE_COPY_P2P": 6,
          "PRE_COPY_P2P>STOP_COPY": 2
        },
        arcLatencyMs: 1
      }
    }
  ],
  topology: {
    domains: [["gpu0", "gpu1", "gpu2", "gpu3", "gpu4", "gpu5", "gpu6", "gpu7"]],
    edges: [
      ["nic0", "gpu0"],
      ["nic0", "gpu1"]
    ]
  },
  seed: 7,
  p2pWritesPerSecond: 2000,
  migration: {
    downtimeLimitMs: 60,
    bandwidthLimit: 1250000000
  }
}

const demoName = "the demo scenario (examples/multi-gpu/scenario.json)"

const intro = [
  "Lockstep demo: live migration of 8 GPUs that all write into each other (P2P) and a NIC that writes",
  "into gpu0 and gpu1, simulated on virtual time with P2P traffic running during pre-copy. Lockstep",
  "quiesces every initiator before any device it writes into halts; the DMA fabric checks that at",
  "every instant, and every destination device is compared with its source byte for byte.",
  ""
].join("\n")

const next = [
  "",
  "Next:",
  "  npx lockstep demo --timeline demo.svg          the run drawn as a picture, one lane per device",
  "  npx lockstep demo --print-scenario > my.json   the scenario, to edit and run: npx lockstep simulate my.json",
  "  npm run example                                more: a vGPU, s390 devices, blocked groups, a rollback, a VMM"
].join("\n")

/** `lockstep demo`: the flagship migration, with no file to give. */
export const demoCommand = Command.make(
  "demo",
  {
    json: jsonFlag,
    timeline: timelineFlag,
    events: eventsFlag,
    otlp: otlpFlag,
    printScenario: Flag.Boolean("print-scenario").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        "Print the demo scenario as JSON and run nothing: a starting point for your own (lockstep simulate FILE runs it)"
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      if (config.printScenario) return yield* Console.log(JSON.stringify(demoScenario, null, 2))
      const scenario = yield* decodeScenario(demoScenario, demoName)
      if (Option.isSome(config.timeline)) yield* checkTimelineFile(config.timeline.value)
      if (!config.json) yield* Console.log(intro)
      const run = yield* runScenario(scenario, {
        json: config.json,
        timeline: config.timeline,
        events: config.events,
        otlp: config.otlp,
        title: "lockstep demo: 8 GPUs all-to-all + a NIC writing into two of them, migrated with P2P traffic running"
      })
      if (config.json) return
      const violations = run.violations.source + run.violations.destination
      // Reached only when the run was verified with no violation: runScenario fails otherwise.
      yield* Console.log(
        `\n${violations} P2P violation${violations === 1 ? "" : "s"} among ${run.writes} P2P writes, destination verified.`
      )
      yield* Console.log(next)
    })
).pipe(
  Command.withDescription(
    "Run the flagship example with nothing to set up: a simulated live migration of 8 GPUs with all-to-all P2P and a NIC writing into two of them, P2P traffic running during pre-copy, on virtual time. Prints the phases, rounds, bytes and downtime, the P2P violations the DMA fabric saw (0), and whether every destination device equals its source. The scenario is examples/multi-gpu/scenario.json, built in; --print-scenario prints it."
  ),
  Command.withShortDescription("Run the flagship example: 8 GPUs and a NIC migrated with P2P traffic."),
  Command.withExamples(({ commandPath }) => [
    { command: commandPath.join(" "), description: "The migration, summarised" },
    {
      command: `${commandPath.join(" ")} --timeline demo.svg`,
      description: "The summary, and the run drawn as a picture"
    },
    { command: `${commandPath.join(" ")} --json`, description: "One JSON object, as simulate --json prints it" },
    {
      command: `${commandPath.join(" ")} --print-scenario > my.json`,
      description: "The scenario, to edit and simulate"
    }
  ])
)
