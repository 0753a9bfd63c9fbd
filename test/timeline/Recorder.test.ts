import { describe, expect, it } from "@effect/vitest"
import { TransitionFailed, transition } from "@lockstep/coordinator"
import { runOnVirtualTime } from "@lockstep/sim"
import {
  type ArcSpan,
  makeTimelineRecorder,
  type StateSpan,
  type TimelineEntry,
  type TimelineInput,
  type Wait
} from "@lockstep/timeline"
import { Effect } from "effect"
import { gpuClusterDoc, recordMigration, recordPlantedBug, simulate } from "./runs.js"

const ofTag = <T extends TimelineEntry["_tag"]>(input: TimelineInput, tag: T) =>
  input.entries.filter((e): e is Extract<TimelineEntry, { _tag: T }> => e._tag === tag)

/** A device's state spans and arcs in time order: they must tile the timeline without gaps or overlaps. */
const laneOf = (input: TimelineInput, device: string): Array<StateSpan | ArcSpan> =>
  input.entries
    .filter((e): e is StateSpan | ArcSpan => (e._tag === "StateSpan" || e._tag === "ArcSpan") && e.device === device)
    .sort((a, b) => a.from - b.from || a.to - b.to)

const expectTiled = (input: TimelineInput) => {
  for (const d of input.devices) {
    const lane = laneOf(input, d.id)
    expect(lane[0]?.from, d.id).toBe(input.start)
    expect(lane.at(-1)?.to, d.id).toBe(input.end)
    for (let i = 1; i < lane.length; i++) expect(lane[i]?.from, `${d.id} #${i}`).toBe(lane[i - 1]?.to)
  }
}

describe("TimelineRecorder: a real run", () => {
  it.effect("records every device's states and arcs, tiling the run, through two transitions", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      expect(input.devices.map((d) => d.id)).toEqual([...Array.from({ length: 8 }, (_, i) => `gpu${i}`), "nic0"])
      expect(input.devices.every((d) => d.kind === "pci" && d.initial === "RUNNING")).toBe(true)
      expectTiled(input)
      const gpu0 = laneOf(input, "gpu0").map((e) => (e._tag === "StateSpan" ? e.state : `${e.arc.from}>${e.arc.to}`))
      // The plan is made and the first arcs start at the same virtual instant: no RUNNING span first.
      expect(gpu0).toEqual([
        "RUNNING>PRE_COPY",
        "PRE_COPY",
        "PRE_COPY>PRE_COPY_P2P",
        "PRE_COPY_P2P",
        "PRE_COPY_P2P>STOP_COPY",
        "STOP_COPY"
      ])
      expect(ofTag(input, "ArcSpan").every((a) => a.outcome === "done")).toBe(true)
      expect(ofTag(input, "Mark").map((m) => m.label)).toEqual(["#1 → PRE_COPY", "#2 → STOP_COPY"])
      expect(input.invariantChecked).toBe(true)
      expect(ofTag(input, "Violation")).toEqual([])
    })
  )

  it.effect("a wait names the arc of another device that released it: the GPUs wait for the NIC to quiesce", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      const intoStopCopy = ofTag(input, "Wait").filter((w) =>
        ofTag(input, "ArcSpan").some((a) => a.id === w.id && a.device === w.device && a.arc.to === "STOP_COPY")
      )
      expect(intoStopCopy.length).toBe(8)
      for (const w of intoStopCopy) {
        expect(w.waitedFor?.device).toBe("nic0")
        expect(w.waitedFor?.arc).toEqual({ from: "PRE_COPY", to: "PRE_COPY_P2P" })
        // The wait runs from the device's own previous arc to the start of the waiting arc.
        const own = laneOf(input, w.device).filter((e): e is ArcSpan => e._tag === "ArcSpan")
        const index = own.findIndex((a) => a.from === w.to)
        expect(own[index - 1]?.to).toBe(w.from)
        expect(w.waitedFor?.at).toBe(w.to)
      }
      const waits: ReadonlyArray<Wait> = ofTag(input, "Wait")
      expect(waits.every((w) => w.to > w.from)).toBe(true)
    })
  )

  it.effect("phases get the downtime emphasis from their label unless told otherwise", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      const phases = ofTag(input, "Phase")
      expect(phases.map((p) => [p.label, p.emphasis])).toEqual([
        ["pre-copy round 1", "normal"],
        ["pre-copy round 2", "normal"],
        [expect.stringMatching(/^switchover \(downtime \d+ ms\)$/), "downtime"]
      ])
      const recorder = makeTimelineRecorder()
      recorder.addPhase("stop-copy drain", 5, 2, "downtime")
      recorder.addPhase("Switchover", 0, 1)
      expect(ofTag(recorder.toInput(), "Phase")).toEqual([
        { _tag: "Phase", label: "stop-copy drain", from: 2, to: 5, emphasis: "downtime" },
        { _tag: "Phase", label: "Switchover", from: 0, to: 1, emphasis: "downtime" }
      ])
    })
  )

  it.effect("records the violations a planted ordering bug causes, on the edges the fabric names", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordPlantedBug(sim)
      const violations = ofTag(input, "Violation")
      expect(violations.length).toBe(sim.fabric.violations().length)
      expect(violations.length).toBeGreaterThan(0)
      const edges = new Set(sim.fabric.edges.map((e) => `${e.initiator} → ${e.target}`))
      expect(violations.every((v) => edges.has(`${v.initiator} → ${v.target}`))).toBe(true)
      expect(violations.every((v) => v.description.startsWith(`${v.initiator} → ${v.target} at ${v.from} ms`))).toBe(
        true
      )
    })
  )

  it.effect("a failed arc, the read-back, the reset and the rollback", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(
        gpuClusterDoc({ gpu3: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY", leaveIn: "error" }] })
      )
      const recorder = makeTimelineRecorder({ devices: sim.group.devices })
      yield* runOnVirtualTime(transition(sim, "PRE_COPY", { onEvent: recorder.onEvent }))
      const failed = yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent })))
      expect(failed).toBeInstanceOf(TransitionFailed)
      const after = recorder.toInput()
      expectTiled(after)
      const failures = ofTag(after, "ArcSpan").filter((a) => a.outcome === "failed")
      expect(failures.map((a) => [a.device, a.arc.to])).toEqual([["gpu3", "STOP_COPY"]])
      expect(failures[0]?.error).toContain("gpu3")
      // Read back in ERROR, then reset by the default policy.
      expect(ofTag(after, "Reset").map((r) => [r.device, r.from])).toEqual([["gpu3", "ERROR"]])
      const rollbacks = ofTag(after, "Rollback")
      expect(rollbacks.length).toBe(1)
      expect(rollbacks[0]?.cause).toContain("gpu3")
      // Every lane ends where the device really is.
      for (const [id, device] of sim.devices) {
        const last = laneOf(after, id).at(-1)
        const state = last?._tag === "StateSpan" ? last.state : last?.outcome === "done" ? last.arc.to : "?"
        expect(state, id).toBe(yield* device.getState)
      }
    })
  )
})
