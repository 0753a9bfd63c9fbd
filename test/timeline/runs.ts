import { writeFileSync } from "node:fs"
import { join } from "node:path"
import {
  decodeGroup,
  executePlanned,
  type Group,
  type Plan,
  type PlanError,
  planTransition,
  type TransitionEvent,
  transition
} from "@lockstep/coordinator"
import { type State, stateClass } from "@lockstep/fsm"
import { runOnVirtualTime, type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { makeTimelineRecorder, type TimelineInput } from "@lockstep/timeline"
import { Clock, Effect, Result } from "effect"
import { TestClock } from "effect/testing"

/**
 * Real runs for the timeline tests: simulated groups driven by the coordinator on virtual
 * time, recorded as the CLI will record them.
 */

const all = ["STOP_COPY", "P2P", "PRE_COPY"]

/**
 * Eight GPUs writing into each other and a NIC writing into every GPU. Latencies differ per
 * device and arc, and the NIC is slow to quiesce (it drains its outstanding DMA), so the GPUs'
 * arcs into STOP_COPY visibly wait for it.
 */
export const gpuClusterDoc = (faults: Readonly<Record<string, ReadonlyArray<unknown>>> = {}) => {
  const gpus = Array.from({ length: 8 }, (_, i) => ({
    id: `gpu${i}`,
    kind: "pci",
    flags: all,
    sim: {
      arcLatenciesMs: {
        "RUNNING>PRE_COPY": 2 + (i % 3),
        "PRE_COPY>PRE_COPY_P2P": 3 + ((i * 5) % 7),
        "PRE_COPY_P2P>STOP_COPY": 4 + (i % 4),
        "STOP_COPY>STOP": 2,
        "STOP>RUNNING_P2P": 2,
        "RUNNING_P2P>RUNNING": 2
      },
      ...(faults[`gpu${i}`] === undefined ? {} : { faults: faults[`gpu${i}`] })
    }
  }))
  const nic = {
    id: "nic0",
    kind: "pci",
    flags: all,
    sim: {
      arcLatenciesMs: { "RUNNING>PRE_COPY": 3, "PRE_COPY>PRE_COPY_P2P": 16, "PRE_COPY_P2P>STOP_COPY": 5 },
      ...(faults.nic0 === undefined ? {} : { faults: faults.nic0 })
    }
  }
  return {
    devices: [...gpus, nic],
    topology: {
      domains: [gpus.map((g) => g.id)],
      edges: gpus.map((g) => [nic.id, g.id])
    }
  }
}

/** A group simulated with P2P writes flowing, so the fabric would see any violation. */
export const simulate = (doc: unknown) =>
  Effect.gen(function* () {
    const group = yield* decodeGroup(doc)
    return yield* simulateGroup(group, { writesPerSecond: 4000 })
  })

const now = Clock.currentTimeMillis

/**
 * The source side of a migration, as a migration session will record it: RUNNING → PRE_COPY,
 * pre-copy rounds of the given lengths, then the switchover (→ STOP_COPY and the final drain)
 * as the downtime window; violations added from the fabric at the end.
 */
export const recordMigration = (sim: SimulatedGroup, roundsMs: ReadonlyArray<number> = [30, 18]) =>
  Effect.gen(function* () {
    const recorder = makeTimelineRecorder({
      devices: sim.group.devices,
      title: "source group: 8 GPUs all-to-all + a NIC"
    })
    const onEvent = (event: TransitionEvent) => recorder.onEvent(event)
    yield* runOnVirtualTime(transition(sim, "PRE_COPY", { onEvent }))
    for (const [i, ms] of roundsMs.entries()) {
      const from = yield* now
      yield* TestClock.adjust(ms)
      recorder.addPhase(`pre-copy round ${i + 1}`, from, yield* now)
    }
    const switchover = yield* now
    yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent }))
    yield* TestClock.adjust(9)
    const drained = yield* now
    recorder.addPhase(`switchover (downtime ${drained - switchover} ms)`, switchover, drained)
    yield* sim.fabric.settle
    recorder.addViolations(sim.fabric.violations(), sim.fabric.corruptingWrites())
    return recorder.toInput()
  })

/**
 * A broken planner for the picture of a bug: the real plan with every arc into a halted state
 * waiting only for its own device's previous arc, so targets halt while their initiators still write.
 */
const withoutDownDependencies =
  (to: State) =>
  (group: Group, from: Readonly<Record<string, State>>): Result.Result<Plan, PlanError> =>
    Result.map(planTransition(group, { from, to }), (plan) => ({
      ...plan,
      arcs: plan.arcs.map((arc) =>
        stateClass(arc.to) !== "halted"
          ? arc
          : { ...arc, after: arc.after.filter((id) => plan.arcs.some((b) => b.id === id && b.device === arc.device)) }
      )
    }))

/** The same group moved to PRE_COPY, then to STOP_COPY with a planted ordering bug: the fabric sees violations. */
export const recordPlantedBug = (sim: SimulatedGroup) =>
  Effect.gen(function* () {
    const recorder = makeTimelineRecorder({
      devices: sim.group.devices,
      title: "planted bug: GPUs stop before the NIC has quiesced"
    })
    yield* runOnVirtualTime(transition(sim, "PRE_COPY", { onEvent: recorder.onEvent }))
    yield* runOnVirtualTime(executePlanned(sim, withoutDownDependencies("STOP_COPY"), { onEvent: recorder.onEvent }))
    yield* sim.fabric.settle
    recorder.addViolations(sim.fabric.violations(), sim.fabric.corruptingWrites())
    return recorder.toInput()
  })

/** Where the tests leave the pictures they draw, when `LOCKSTEP_TIMELINE_OUT` names a directory. */
export const keep = (name: string, content: string | Uint8Array | TimelineInput): void => {
  const directory = process.env.LOCKSTEP_TIMELINE_OUT
  if (directory === undefined || directory === "") return
  const bytes =
    typeof content === "string" || content instanceof Uint8Array ? content : JSON.stringify(content, null, 2)
  writeFileSync(join(directory, name), bytes)
}

/** gpu3's arc into STOP_COPY fails and leaves it in ERROR: the transition rolls back and gpu3 is reset. */
export const recordRollback = Effect.gen(function* () {
  const sim = yield* simulate(
    gpuClusterDoc({ gpu3: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY", leaveIn: "error" }] })
  )
  const recorder = makeTimelineRecorder({ devices: sim.group.devices, title: "gpu3 fails into ERROR" })
  yield* runOnVirtualTime(transition(sim, "PRE_COPY", { onEvent: recorder.onEvent }))
  yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent })))
  yield* sim.fabric.settle
  recorder.addViolations(sim.fabric.violations(), sim.fabric.corruptingWrites())
  return recorder.toInput()
})

/** 64 GPUs `gpu0`…`gpu63` behind one IOMMU (no P2P between them), moved to STOP_COPY. */
export const record64Devices = Effect.gen(function* () {
  const devices = Array.from({ length: 64 }, (_, i) => ({
    id: `gpu${i}`,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: { arcLatencyMs: 1 + (i % 5), arcLatenciesMs: { "RUNNING>RUNNING_P2P": 1 + ((i * 7) % 11) } }
  }))
  const sim = yield* simulate({ devices })
  const recorder = makeTimelineRecorder({ devices: sim.group.devices, title: "64 GPUs, shared IOMMU" })
  yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent }))
  yield* sim.fabric.settle
  recorder.addViolations(sim.fabric.violations())
  return recorder.toInput()
})

/** A GPU writing into an NVMe drive that has no P2P state, moved to STOP_COPY. */
export const recordTwoDevices = Effect.gen(function* () {
  const sim = yield* simulate({
    devices: [
      { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
      { id: "nvme0", kind: "pci", flags: ["STOP_COPY"] }
    ],
    topology: { edges: [["gpu0", "nvme0"]] }
  })
  const recorder = makeTimelineRecorder({ devices: sim.group.devices })
  yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent }))
  return recorder.toInput()
})
