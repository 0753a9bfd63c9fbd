import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { transition } from "@lockstep/coordinator"
import { runOnVirtualTime } from "@lockstep/sim"
import {
  type FleetTimelineInput,
  makeTimelineRecorder,
  p2pOf,
  renderFleetTimelineSvg,
  renderTimelineSvg,
  type TimelineInput
} from "@lockstep/timeline"
import { Effect } from "effect"
import {
  gpuClusterDoc,
  record64Devices,
  recordMigration,
  recordPlantedBug,
  recordRollback,
  recordTwoDevices,
  simulate
} from "./runs.js"

/**
 * A refactor guard, not a behavioural test: the pictures of a dozen varied runs, compared byte
 * for byte with the ones the renderers drew before they were split into one module per element.
 * It says only that the output is unchanged; what the pictures must show is asserted, from the
 * rule, by `Render.test.ts` and `FleetTimeline.test.ts`. When a change to a picture is meant,
 * regenerate with `LOCKSTEP_GOLDEN_WRITE=1 npx vitest run test/timeline/Golden.test.ts`
 * and look at the new pictures before committing them.
 */

const directory = join(import.meta.dirname, "golden")
const writing = process.env.LOCKSTEP_GOLDEN_WRITE === "1"

const matchesGolden = (name: string, source: string): void => {
  const path = join(directory, name)
  if (writing) {
    mkdirSync(directory, { recursive: true })
    writeFileSync(path, source)
    return
  }
  expect(existsSync(path), `${path} is missing`).toBe(true)
  // Not `toBe` on the whole: a diff of two 100 kB strings is unreadable; the first difference says enough.
  const golden = readFileSync(path, "utf8")
  if (source === golden) return
  let at = 0
  while (source[at] === golden[at]) at++
  const around = (s: string) => s.slice(Math.max(0, at - 60), at + 60)
  expect(around(source), `${name}: first difference at character ${at}`).toBe(around(golden))
}

/** Everything a recorder can hand over, written by hand: the rarer elements drawn at once. */
const everyElement: TimelineInput = {
  title: "every element",
  start: 0,
  end: 120,
  invariantChecked: true,
  devices: [
    { id: "gpu0", kind: "pci", initial: "RUNNING" },
    { id: "gpu1", kind: "mdev-long-kind", initial: "UNKNOWN" },
    { id: "nic0", kind: "pci", initial: "RUNNING" },
    { id: "a-device-with-a-very-long-name-indeed", kind: "", initial: "STOP" }
  ],
  p2p: { domains: [["gpu0", "gpu1"]], edges: [["nic0", "gpu0"]] },
  entries: [
    { _tag: "StateSpan", device: "gpu0", state: "RUNNING", from: 0, to: 10 },
    {
      _tag: "ArcSpan",
      device: "gpu0",
      id: "a1",
      arc: { from: "RUNNING", to: "RUNNING_P2P" },
      from: 10,
      to: 14,
      outcome: "done"
    },
    { _tag: "StateSpan", device: "gpu0", state: "RUNNING_P2P", from: 14, to: 40 },
    { _tag: "StateSpan", device: "gpu1", state: "UNKNOWN", from: 0, to: 20 },
    {
      _tag: "ArcSpan",
      device: "gpu1",
      id: "a2",
      arc: { from: "RUNNING", to: "STOP" },
      from: 20,
      to: 26,
      outcome: "failed",
      error: "EIO"
    },
    { _tag: "StateSpan", device: "gpu1", state: "ERROR", from: 26, to: 60 },
    { _tag: "Reset", device: "gpu1", from: "ERROR", at: 60 },
    { _tag: "Quarantine", device: "gpu1", at: 70 },
    { _tag: "Wait", device: "nic0", id: "a3", from: 5, to: 14 },
    {
      _tag: "Wait",
      device: "nic0",
      id: "a4",
      from: 14,
      to: 40,
      waitedFor: { device: "gpu0", id: "a1", arc: { from: "RUNNING", to: "RUNNING_P2P" }, at: 14 }
    },
    {
      _tag: "ArcSpan",
      device: "nic0",
      id: "a4",
      arc: { from: "RUNNING", to: "STOP" },
      from: 40,
      to: 120,
      outcome: "running"
    },
    { _tag: "Rollback", from: 60, to: 90, ok: false, cause: "gpu1 failed" },
    { _tag: "Phase", label: "pre-copy", from: 0, to: 30, emphasis: "normal" },
    { _tag: "Phase", label: "switchover", from: 30, to: 50, emphasis: "downtime" },
    { _tag: "Mark", at: 12, label: "#1 RUNNING_P2P" },
    { _tag: "Mark", at: 45, label: "seen", device: "nic0" },
    { _tag: "Violation", initiator: "nic0", target: "gpu1", from: 22, to: 30, description: "nic0 wrote into gpu1" },
    { _tag: "CorruptingWrites", initiator: "nic0", target: "gpu1", from: 22, to: 28, writes: 3 }
  ]
}

const timelines: ReadonlyArray<{ readonly name: string; readonly input: Effect.Effect<TimelineInput, unknown> }> = [
  { name: "migration", input: Effect.flatMap(simulate(gpuClusterDoc()), (sim) => recordMigration(sim)) },
  { name: "planted-bug", input: Effect.flatMap(simulate(gpuClusterDoc()), recordPlantedBug) },
  {
    name: "long-pre-copy",
    input: Effect.flatMap(simulate(gpuClusterDoc()), (sim) => recordMigration(sim, [4000, 3000, 2500]))
  },
  { name: "rollback", input: recordRollback },
  {
    name: "p2p-waits",
    input: Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const recorder = makeTimelineRecorder({ devices: sim.group.devices, p2p: p2pOf(sim.group.topology) })
      yield* runOnVirtualTime(transition(sim, "RUNNING_P2P", { onEvent: recorder.onEvent }))
      yield* runOnVirtualTime(transition(sim, "STOP", { onEvent: recorder.onEvent }))
      return recorder.toInput()
    })
  },
  { name: "64-devices", input: record64Devices },
  { name: "two-devices", input: recordTwoDevices },
  { name: "every-element", input: Effect.succeed(everyElement) },
  { name: "empty", input: Effect.succeed({ devices: [], entries: [] }) }
]

describe("timeline pictures, unchanged (refactor guard)", () => {
  for (const { name, input } of timelines)
    it.effect(name, () =>
      Effect.gen(function* () {
        const timeline = yield* input
        matchesGolden(`${name}.svg`, renderTimelineSvg(timeline))
        if (name === "long-pre-copy")
          matchesGolden(`${name}-linear.svg`, renderTimelineSvg(timeline, { compressTime: false }))
        if (name === "every-element" || name === "migration")
          matchesGolden(
            `${name}-options.svg`,
            renderTimelineSvg(timeline, { width: 480, title: "<narrow> & titled", laneHeight: 20, waitLabels: false })
          )
      })
    )

  const fleet: FleetTimelineInput = {
    title: "Evacuation of <host-a> & co",
    start: 1_000,
    end: 61_000,
    lanes: [
      {
        vm: "vm01",
        detail: "→ host-b",
        outcome: "migrated",
        phases: [
          { phase: "reserve", attempt: 1, from: 1_000, to: 1_200 },
          { phase: "handshake", attempt: 1, from: 1_200, to: 1_500 },
          { phase: "prepare", attempt: 1, from: 1_500, to: 2_000 },
          { phase: "precopy", attempt: 1, from: 2_000, to: 13_000 },
          { phase: "recover", attempt: 2, from: 14_000, to: 14_200 },
          { phase: "switchover", attempt: 2, from: 15_000, to: 15_100 },
          { phase: "drain", attempt: 2, from: 15_100, to: 15_400 },
          { phase: "validate", attempt: 2, from: 15_400, to: 15_500 },
          { phase: "commit", attempt: 2, from: 15_500, to: 15_600 },
          { phase: "resume", attempt: 2, from: 15_600, to: 16_000 }
        ],
        downtime: { from: 15_000, to: 16_000 }
      },
      {
        vm: "vm02",
        detail: "→ host-c",
        outcome: "rolled-back",
        phases: [{ phase: "precopy", attempt: 1, from: 2_000 }]
      },
      {
        vm: "vm03-with-a-long-name",
        detail: "→ host-d (rack 7, row 3)",
        outcome: "running",
        phases: [{ phase: "an-unknown-phase", attempt: 1, from: 20_000, to: 30_000 }]
      },
      { vm: "vm04", detail: "", outcome: "pending", phases: [] }
    ]
  }

  it("fleet", () => {
    matchesGolden("fleet.svg", renderFleetTimelineSvg(fleet))
    matchesGolden("fleet-narrow.svg", renderFleetTimelineSvg(fleet, { width: 300 }))
    matchesGolden("fleet-empty.svg", renderFleetTimelineSvg({ title: "", start: 0, end: 0, lanes: [] }))
  })
})
