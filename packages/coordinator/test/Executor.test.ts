import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, type Group, type TransitionEvent, TransitionFailed, transition } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { type Fault, runOnVirtualTime, type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"

const all = ["STOP_COPY", "P2P", "PRE_COPY"]

/** GPUs all-to-all, a NIC writing into two of them, an mdev, a ccw device, and a target without P2P. */
const mixedDoc = {
  devices: [
    { id: "gpu0", kind: "pci", flags: all },
    { id: "gpu1", kind: "pci", flags: all },
    { id: "gpu2", kind: "pci", flags: all },
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "nvme0", kind: "pci", flags: ["STOP_COPY"] },
    { id: "vgpu0", kind: "mdev", flags: ["STOP_COPY", "PRE_COPY"] },
    { id: "ccw0", kind: "ccw", flags: ["STOP_COPY", "P2P"] }
  ],
  topology: {
    domains: [["gpu0", "gpu1", "gpu2"]],
    edges: [
      ["nic0", "gpu0"],
      ["nic0", "gpu1"],
      ["gpu2", "nvme0"]
    ]
  }
}

const simulate = (doc: unknown, faults: Record<string, ReadonlyArray<Fault>> = {}) =>
  Effect.gen(function* () {
    const withFaults = doc as { devices: Array<Record<string, unknown>> }
    const devices = withFaults.devices.map((d) => {
      const f = Object.hasOwn(faults, d.id as string) ? faults[d.id as string] : undefined
      return f === undefined ? d : { ...d, sim: { ...(d.sim as object | undefined), faults: f } }
    })
    const group = yield* decodeGroup({ ...(doc as object), devices })
    return yield* simulateGroup(group, { writesPerSecond: 2000 })
  })

const statesOf = (sim: SimulatedGroup) =>
  Effect.gen(function* () {
    const out: Record<string, State> = {}
    for (const [id, d] of sim.devices) out[id] = yield* d.getState
    return out
  })

const same = (group: Group, s: State): Record<string, State> => Object.fromEntries(group.devices.map((d) => [d.id, s]))

/** Violations the coordinator could have prevented: everything but a device failing into ERROR. */
const orderingViolations = (sim: SimulatedGroup) =>
  sim.fabric.violations().filter((v) => !(v.cause.event === "ArcFailed" && v.initiator.state === "ERROR"))

describe("transition: moving a mixed group", () => {
  const targets: ReadonlyArray<State> = ["RUNNING_P2P", "STOP", "STOP_COPY", "RESUMING", "PRE_COPY", "PRE_COPY_P2P"]
  for (const target of targets) {
    it.effect(`RUNNING → ${target} (where supported) and back, with no P2P violation`, () =>
      Effect.gen(function* () {
        const sim = yield* simulate(mixedDoc)
        const to = Object.fromEntries(
          sim.group.devices.map((d) => {
            const needsPre = target === "PRE_COPY" || target === "PRE_COPY_P2P"
            const needsP2P = target === "RUNNING_P2P" || target === "PRE_COPY_P2P"
            const ok = (!needsPre || (d.flags & 4) !== 0) && (!needsP2P || (d.flags & 2) !== 0)
            return [d.id, ok ? target : needsPre && (d.flags & 4) !== 0 ? "PRE_COPY" : "RUNNING"]
          })
        )
        const report = yield* runOnVirtualTime(transition(sim, to))
        expect(yield* statesOf(sim)).toEqual(to)
        expect(report.to).toEqual(to)
        // A device leaves RESUMING only by validating a stream or by a reset (nothing was written here).
        if (target === "RESUMING") for (const d of sim.devices.values()) yield* d.reset
        else yield* runOnVirtualTime(transition(sim, "RUNNING"))
        expect(yield* statesOf(sim)).toEqual(same(sim.group, "RUNNING"))
        yield* sim.fabric.assertNoViolations
        expect(sim.fabric.corruptingWrites()).toEqual([])
      })
    )
  }

  it.effect(
    "a whole migration's source side and destination side: RUNNING → PRE_COPY → STOP_COPY, RESUMING → RUNNING",
    () =>
      Effect.gen(function* () {
        const sim = yield* simulate(mixedDoc)
        yield* runOnVirtualTime(
          transition(
            sim,
            Object.fromEntries(sim.group.devices.map((d) => [d.id, (d.flags & 4) !== 0 ? "PRE_COPY" : "RUNNING"]))
          )
        )
        yield* runOnVirtualTime(transition(sim, "STOP_COPY"))
        expect(yield* statesOf(sim)).toEqual(same(sim.group, "STOP_COPY"))
        const dest = yield* simulate(mixedDoc)
        yield* runOnVirtualTime(transition(dest, "RESUMING"))
        // Abort path of a destination: RESUMING devices reset (nothing was written).
        for (const d of dest.devices.values()) yield* d.reset
        yield* sim.fabric.assertNoViolations
        yield* dest.fabric.assertNoViolations
      })
  )

  it.effect("emits arc events in a consistent order and one PlanReady first", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(mixedDoc)
      const events: Array<TransitionEvent> = []
      yield* runOnVirtualTime(transition(sim, "STOP", { onEvent: (e) => events.push(e) }))
      expect(events[0]?._tag).toBe("PlanReady")
      const started = events.filter((e) => e._tag === "ArcStarted")
      const done = events.filter((e) => e._tag === "ArcDone")
      expect(started.length).toBe(done.length)
      expect(started.length).toBeGreaterThan(sim.group.devices.length)
      for (const d of done) {
        const s = started.findIndex((e) => e._tag === "ArcStarted" && e.id === d.id)
        expect(s).toBeGreaterThanOrEqual(0)
        expect(events.indexOf(d)).toBeGreaterThan(events.indexOf(started[s] as TransitionEvent))
      }
      yield* sim.fabric.assertNoViolations
    })
  )
})

describe("transition: concurrency", () => {
  const gpus = (n: number) => ({
    devices: Array.from({ length: n }, (_, i) => ({
      id: `gpu${i}`,
      kind: "pci",
      flags: all,
      sim: { arcLatencyMs: 10 }
    }))
  })

  it.effect("eight GPUs all-to-all stop in the time of one device's path, not eight", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpus(8))
      const report = yield* runOnVirtualTime(transition(sim, "STOP"))
      // RUNNING → RUNNING_P2P → STOP: two arcs of 10 ms each on the critical path.
      expect(report.finishedAt - report.startedAt).toBe(20)
      yield* sim.fabric.assertNoViolations
    })
  )

  it.effect("a concurrency bound of 1 serialises the arcs", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpus(4))
      const report = yield* runOnVirtualTime(transition(sim, "STOP", { concurrency: 1 }))
      expect(report.finishedAt - report.startedAt).toBe(8 * 10)
      yield* sim.fabric.assertNoViolations
    })
  )
})

describe("transition: failure and rollback", () => {
  const small = {
    devices: [
      { id: "gpu0", kind: "pci", flags: all },
      { id: "gpu1", kind: "pci", flags: all },
      { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
      { id: "vgpu0", kind: "mdev", flags: ["STOP_COPY"] }
    ],
    topology: {
      domains: [["gpu0", "gpu1"]],
      edges: [["nic0", "gpu0"]]
    }
  }
  const arcsTo = (target: State) =>
    Effect.gen(function* () {
      const sim = yield* simulate(small)
      const events: Array<TransitionEvent> = []
      yield* runOnVirtualTime(transition(sim, target, { onEvent: (e) => events.push(e) }))
      return events.flatMap((e) => (e._tag === "ArcStarted" ? [{ device: e.device, ...e.arc }] : []))
    })

  for (const leaveIn of ["original", "target", "error"] as const) {
    for (const policy of ["reset", "quarantine"] as const) {
      it.effect(`a fault at every arc of RUNNING → STOP_COPY, device left in ${leaveIn}, policy ${policy}`, () =>
        Effect.gen(function* () {
          const arcs = yield* arcsTo("STOP_COPY")
          expect(arcs.length).toBe(11)
          for (const arc of arcs) {
            const sim = yield* simulate(small, {
              [arc.device]: [{ _tag: "FailArc", from: arc.from, to: arc.to, leaveIn }]
            })
            const error = yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY", { errorPolicy: policy })))
            expect(error._tag).toBe("TransitionFailed")
            if (error._tag !== "TransitionFailed") continue
            expect(error.device).toBe(arc.device)
            expect(error.arc).toEqual({ from: arc.from, to: arc.to })
            const final = yield* statesOf(sim)
            expect(error.finalStates).toEqual(final)
            if (leaveIn === "error" && policy === "quarantine") {
              expect(error.quarantined).toEqual([arc.device])
              expect(final[arc.device]).toBe("ERROR")
              for (const [id, s] of Object.entries(final)) if (id !== arc.device) expect(s).toBe("RUNNING")
            } else {
              expect(error.rolledBack).toBe(true)
              expect(final).toEqual(same(sim.group, "RUNNING"))
            }
            expect(orderingViolations(sim)).toEqual([])
            // A device failing into ERROR is an exposure the coordinator cannot prevent; it must end.
            for (const v of sim.fabric.violations()) if (policy === "reset") expect(v.endedAt).toBeDefined()
          }
        })
      )
    }
  }

  it.effect("the failure names the device, the arc, the cause and every device's final state", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(small, { gpu1: [{ _tag: "FailArc", from: "RUNNING_P2P", to: "STOP", code: "EIO" }] })
      const error = yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY")))
      expect(error).toBeInstanceOf(TransitionFailed)
      if (!(error instanceof TransitionFailed)) return
      expect(error.device).toBe("gpu1")
      expect(error.arc).toEqual({ from: "RUNNING_P2P", to: "STOP" })
      expect(error.cause).toMatchObject({ _tag: "DeviceError", reason: { _tag: "ArcFailed", code: "EIO" } })
      expect(error.rolledBack).toBe(true)
      expect(error.finalStates).toEqual(same(sim.group, "RUNNING"))
      expect(error.message).toContain("gpu1: RUNNING_P2P → STOP")
      yield* sim.fabric.assertNoViolations
    })
  )

  it.effect("a hung arc times out and the group rolls back", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(small, { nic0: [{ _tag: "HangArc", from: "RUNNING_P2P", to: "STOP" }] })
      const error = yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY", { arcTimeoutMs: 500 })))
      expect(error._tag).toBe("TransitionFailed")
      if (error._tag !== "TransitionFailed") return
      expect(error.cause._tag).toBe("ArcTimedOut")
      expect(error.finalStates).toEqual(same(sim.group, "RUNNING"))
      yield* sim.fabric.assertNoViolations
    })
  )

  it.effect("an interrupted transition rolls back before the interruption completes", () =>
    Effect.gen(function* () {
      const sim = yield* simulate({
        devices: small.devices.map((d) => ({ ...d, sim: { arcLatencyMs: 10 } })),
        topology: small.topology
      })
      const fiber = yield* Effect.forkChild(transition(sim, "STOP_COPY"))
      yield* Effect.yieldNow
      yield* TestClock.adjust(15)
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* runOnVirtualTime(Fiber.join(interrupting))
      expect(yield* statesOf(sim)).toEqual(same(sim.group, "RUNNING"))
      yield* sim.fabric.assertNoViolations
    })
  )

  it.effect("a refused plan touches nothing", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(small)
      const error = yield* Effect.flip(transition(sim, { vgpu0: "PRE_COPY" }))
      expect(error._tag).toBe("TransitionRefused")
      expect(sim.fabric.trace()).toEqual([])
    })
  )
})

describe("transition: rollback out of RESUMING", () => {
  it.effect("a failed prepareResume resets the devices already in RESUMING", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(
        {
          devices: ["gpu0", "gpu1", "gpu2"].map((id) => ({ id, kind: "pci", flags: all, sim: { arcLatencyMs: 1 } }))
        },
        { gpu2: [{ _tag: "FailArc", from: "STOP", to: "RESUMING" }] }
      )
      const error = yield* Effect.flip(runOnVirtualTime(transition(sim, "RESUMING")))
      expect(error._tag).toBe("TransitionFailed")
      if (error._tag !== "TransitionFailed") return
      expect(error.rolledBack).toBe(true)
      expect(error.finalStates).toEqual(same(sim.group, "RUNNING"))
      expect(sim.fabric.trace().filter((e) => e._tag === "Reset").length).toBeGreaterThan(0)
      yield* sim.fabric.assertNoViolations
    })
  )
})

describe("transition: records keyed by device id", () => {
  // The executor and the planner build their per-device records in dictionary mode (issue 17),
  // through two scratch keys added and deleted first: whatever the ids, every device of the group
  // is named in the plan and the report, as Object.fromEntries would.
  it.effect("devices named like the scratch keys are in the plan and the report", () =>
    Effect.gen(function* () {
      const ids = ["dictionary", "mode", "gpu0"]
      const sim = yield* simulate({
        devices: ids.map((id) => ({ id, kind: "pci", flags: all })),
        topology: "shared-iommu"
      })
      const events: Array<TransitionEvent> = []
      const report = yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: (e) => events.push(e) }))
      const stopped = Object.fromEntries(ids.map((id) => [id, "STOP_COPY"]))
      expect(Object.keys(report.to).sort()).toEqual([...ids].sort())
      expect(report.to).toEqual(stopped)
      expect(report.from).toEqual(Object.fromEntries(ids.map((id) => [id, "RUNNING"])))
      expect(report.plan.target).toEqual(stopped)
      expect(Object.getPrototypeOf(report.to)).toBe(Object.prototype)
      for (const id of ids) expect(yield* sim.devices.get(id)?.getState ?? Effect.die("missing")).toBe("STOP_COPY")
      yield* sim.fabric.assertNoViolations
    })
  )

  it.effect("devices named like Object.prototype's members are rolled back like any other", () =>
    Effect.gen(function* () {
      const ids = ["__proto__", "constructor", "toString"]
      const fails: ReadonlyArray<Fault> = [{ _tag: "FailArc", from: "RUNNING_P2P", to: "STOP" }]
      const sim = yield* simulate(
        { devices: ids.map((id) => ({ id, kind: "pci", flags: all })), topology: "shared-iommu" },
        { constructor: fails }
      )
      const error = yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY")))
      expect(error).toBeInstanceOf(TransitionFailed)
      if (!(error instanceof TransitionFailed)) return
      expect(error.device).toBe("constructor")
      expect(error.rolledBack).toBe(true)
      // The rollback goes back to where the transition started: every device RUNNING.
      expect(error.finalStates).toEqual(Object.fromEntries(ids.map((id) => [id, "RUNNING"])))
      for (const id of ids) expect(yield* sim.devices.get(id)?.getState ?? Effect.die("missing")).toBe("RUNNING")
      yield* sim.fabric.assertNoViolations
    })
  )
})
