import { describe, expect, it } from "@effect/vitest"
import {
  beginPrecopyPlan,
  enterStopCopyPlan,
  expandAfter,
  formatPlan,
  type Group,
  type Plan,
  type PlanError,
  type PlanErrorReason,
  planJson,
  planTransition,
  prepareResumePlan,
  quiescePlan,
  resumePlan,
  type StateAssignment,
  stopPlan,
  verifyPlan
} from "@lockstep/coordinator"
import { AllFlagSets, path, type State, States, stateClass } from "@lockstep/fsm"
import { Result } from "effect"
import { all, cliqueDoc, groupOf, mixedDoc } from "./groups.js"
import { chooser, simulate } from "./simulation.js"

const planned = (result: Result.Result<Plan, PlanError>): Plan => {
  if (Result.isFailure(result)) throw new Error(`expected a plan, got ${result.failure.message}`)
  return result.success
}

/** Why the planner refused: the reason its `PlanError` carries. */
const refusal = (result: Result.Result<Plan, PlanError>): PlanErrorReason => {
  if (Result.isSuccess(result)) throw new Error(`expected a refusal, got\n${formatPlan(result.success)}`)
  expect(result.failure._tag).toBe("PlanError")
  return result.failure.reason
}

/** The plan is safe: verifyPlan proves it and a few random executions agree. */
const expectSafe = (plan: Plan, group: Group, initial: StateAssignment) => {
  expect(verifyPlan(plan, group, initial)).toEqual(Result.void)
  const states = Object.fromEntries(
    group.devices.map((d) => [d.id, typeof initial === "string" ? initial : (initial[d.id] ?? "RUNNING")])
  )
  for (let seed = 0; seed < 20; seed++) expect(simulate(plan, group, states, chooser(seed))).toBeUndefined()
}

const arcsOf = (plan: Plan, device: string) => plan.arcs.filter((a) => a.device === device)
const arcOf = (plan: Plan, device: string, from: State, to: State) => {
  const arc = plan.arcs.find((a) => a.device === device && a.from === from && a.to === to)
  if (arc === undefined) throw new Error(`no arc ${device} ${from} → ${to}`)
  return arc
}

const nicIntoGpu = groupOf({
  devices: [
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] }
  ],
  topology: { edges: [["nic0", "gpu0"]] }
})

describe("kernel paths", () => {
  it("are monotone in class, which gives each device at most one initiating and one halted window", () => {
    const rank = { halted: 0, quiesced: 1, initiating: 2 } as const
    for (const flags of AllFlagSets) {
      for (const from of States) {
        for (const to of States) {
          const p = path(from, to, flags)
          if (Result.isFailure(p)) continue
          const ranks = p.success.map((s) => rank[stateClass(s)])
          const up = ranks.every((r, i) => i === 0 || r >= (ranks[i - 1] ?? r))
          const down = ranks.every((r, i) => i === 0 || r <= (ranks[i - 1] ?? r))
          expect(up || down, `${flags}: ${p.success.join(" → ")}`).toBe(true)
        }
      }
    }
  })
})

describe("planTransition", () => {
  const fullMixed = groupOf({
    devices: mixedDoc.devices.map((d) => ({ ...d, flags: all })),
    topology: mixedDoc.topology
  })

  for (const target of States.filter((s) => s !== "ERROR")) {
    it(`plans RUNNING → ${target} for a mixed group, and the plan is safe`, () => {
      const plan = planned(planTransition(fullMixed, { to: target }))
      expectSafe(plan, fullMixed, "RUNNING")
      const expected = Result.getOrThrow(path("RUNNING", target, 7)).length - 1
      for (const d of fullMixed.devices) expect(arcsOf(plan, d.id).length).toBe(expected)
      expect(Object.values(plan.target).every((s) => s === target)).toBe(true)
    })
  }

  it("plans RESUMING → RUNNING: every target out of STOP before any initiator runs", () => {
    const plan = planned(planTransition(fullMixed, { from: "RESUMING", to: "RUNNING" }))
    expectSafe(plan, fullMixed, "RESUMING")
    const nicRuns = arcOf(plan, "nic0", "RUNNING_P2P", "RUNNING")
    const gpu0Wakes = arcOf(plan, "gpu0", "STOP", "RUNNING_P2P")
    expect(expandAfter(plan).get(nicRuns.id)).toContain(gpu0Wakes.id)
  })

  it("orders an edge with exactly one dependency each way it needs, and gives this JSON", () => {
    const down = planned(planTransition(nicIntoGpu, { to: "STOP" }))
    expect(planJson(down)).toEqual({
      arcs: [
        { id: "a1", device: "nic0", from: "RUNNING", to: "RUNNING_P2P", after: [] },
        { id: "a2", device: "gpu0", from: "RUNNING", to: "RUNNING_P2P", after: [] },
        { id: "a3", device: "nic0", from: "RUNNING_P2P", to: "STOP", after: ["a1"] },
        { id: "a4", device: "gpu0", from: "RUNNING_P2P", to: "STOP", after: ["a1", "a2"] }
      ],
      barriers: []
    })
    const up = planned(planTransition(nicIntoGpu, { from: "STOP", to: "RUNNING" }))
    expect(planJson(up)).toEqual({
      arcs: [
        { id: "a1", device: "nic0", from: "STOP", to: "RUNNING_P2P", after: [] },
        { id: "a2", device: "gpu0", from: "STOP", to: "RUNNING_P2P", after: [] },
        { id: "a3", device: "nic0", from: "RUNNING_P2P", to: "RUNNING", after: ["a1", "a2"] },
        { id: "a4", device: "gpu0", from: "RUNNING_P2P", to: "RUNNING", after: ["a2"] }
      ],
      barriers: []
    })
  })

  it("prints a plan by level, with dependencies and barriers", () => {
    const group = groupOf({
      devices: [...cliqueDoc(3).devices, { id: "ccw0", kind: "ccw", flags: ["STOP_COPY"] }]
    })
    expect(formatPlan(planned(planTransition(group, { to: "STOP" })))).toBe(
      [
        "7 arcs on 4 of 4 devices, 2 levels, 1 barrier",
        "level 1",
        "  a1  gpu0  RUNNING → RUNNING_P2P",
        "  a2  gpu1  RUNNING → RUNNING_P2P",
        "  a3  gpu2  RUNNING → RUNNING_P2P",
        "  a4  ccw0  RUNNING → STOP",
        "level 2",
        "  a5  gpu0  RUNNING_P2P → STOP  after a1, b1",
        "  a6  gpu1  RUNNING_P2P → STOP  after a2, b1",
        "  a7  gpu2  RUNNING_P2P → STOP  after a3, b1",
        "barriers",
        "  b1  initiators quiesced in P2P domain {gpu0, gpu1, gpu2}: after a1, a2, a3"
      ].join("\n")
    )
  })

  it("gives a device without edges no dependency but its own previous arc", () => {
    const plan = planned(planTransition(fullMixed, { to: "STOP_COPY" }))
    for (const device of ["vgpu0", "ccw0"]) {
      const arcs = arcsOf(plan, device)
      expect(arcs.length).toBe(3)
      arcs.forEach((arc, i) => {
        expect(arc.after).toEqual(i === 0 ? [] : [arcs[i - 1]?.id])
      })
    }
    const none = groupOf({ ...cliqueDoc(3), topology: "none" })
    const alone = planned(planTransition(none, { to: "STOP_COPY" }))
    expect(alone.barriers).toEqual([])
    expect(Math.max(...alone.arcs.map((a) => a.after.length))).toBe(1)
  })

  it("numbers arcs deterministically, each waiting only for earlier ids", () => {
    const group = groupOf(cliqueDoc(12))
    const once = planned(planTransition(group, { from: "RESUMING", to: "RUNNING" }))
    expect(planned(planTransition(group, { from: "RESUMING", to: "RUNNING" }))).toEqual(once)
    once.arcs.forEach((arc, i) => {
      expect(arc.id).toBe(`a${i + 1}`)
      for (const dep of arc.after) if (dep.startsWith("a")) expect(Number(dep.slice(1))).toBeLessThan(i + 1)
    })
  })

  it("refuses an initiator left initiating while its target halts, naming the edge", () => {
    const error = refusal(planTransition(nicIntoGpu, { to: { gpu0: "STOP" } }))
    expect(error).toMatchObject({ _tag: "UnsafeEdge", edge: ["nic0", "gpu0"], moment: "after", initiatorStays: true })
    expect(error.message).toBe(
      "edge nic0 → gpu0: nic0 stays in RUNNING (initiating) and could write into gpu0 in STOP (halted); nic0 must be quiesced or halted first"
    )
    const clique = refusal(planTransition(groupOf(cliqueDoc(4)), { to: { gpu2: "STOP_COPY" } }))
    expect(clique).toMatchObject({ _tag: "UnsafeEdge", moment: "after" })
  })

  it("refuses states that are unsafe before the plan", () => {
    const error = refusal(planTransition(nicIntoGpu, { from: { gpu0: "STOP" }, to: "STOP" }))
    expect(error).toMatchObject({ _tag: "UnsafeEdge", edge: ["nic0", "gpu0"], moment: "before" })
  })

  it("lets a target halt under an initiator that stays but is already quiesced", () => {
    const from = { nic0: "RUNNING_P2P" } as const
    const plan = planned(planTransition(nicIntoGpu, { from, to: { gpu0: "STOP_COPY" } }))
    expect(arcsOf(plan, "nic0")).toEqual([])
    expectSafe(plan, nicIntoGpu, from)
  })

  it("keeps a quarantined device in ERROR where it is, and its targets out of halted states", () => {
    const group = groupOf(cliqueDoc(3))
    const from = { gpu1: "ERROR" } as const
    const quiesced = planned(planTransition(group, { from, to: { gpu0: "RUNNING_P2P", gpu2: "RUNNING_P2P" } }))
    expect(arcsOf(quiesced, "gpu1")).toEqual([])
    expectSafe(quiesced, group, from)
    expect(refusal(planTransition(group, { from, to: { gpu0: "STOP", gpu2: "STOP" } }))).toMatchObject({
      _tag: "UnsafeEdge",
      edge: ["gpu1", "gpu0"],
      initiatorState: "ERROR"
    })
    expect(refusal(planTransition(group, { from, to: "RUNNING" }))).toMatchObject({
      _tag: "PathRefused",
      device: "gpu1",
      cause: { _tag: "FsmError", reason: { _tag: "FromError" } }
    })
  })

  it("refuses a path the kernel refuses, naming the device", () => {
    const group = groupOf(mixedDoc)
    const error = refusal(planTransition(group, { to: "PRE_COPY" }))
    expect(error).toMatchObject({
      _tag: "PathRefused",
      device: "gpu2",
      to: "PRE_COPY",
      cause: { _tag: "FsmError", reason: { _tag: "UnsupportedState" } }
    })
    expect(error.message.startsWith("gpu2: cannot go RUNNING → PRE_COPY: ")).toBe(true)
    expect(refusal(planTransition(group, { from: "STOP_COPY", to: "PRE_COPY" }))).toMatchObject({
      _tag: "PathRefused",
      device: "gpu0",
      cause: { _tag: "FsmError", reason: { _tag: "BlockedTransition" } }
    })
  })

  it("refuses states for devices that are not in the group", () => {
    expect(refusal(planTransition(nicIntoGpu, { to: { gpu9: "STOP" } }))).toMatchObject({
      _tag: "DeviceNotInGroup",
      device: "gpu9",
      role: "to"
    })
    expect(refusal(stopPlan(nicIntoGpu, { nic1: "RUNNING" }))).toMatchObject({ _tag: "DeviceNotInGroup", role: "from" })
  })

  it("refuses devices without P2P that write into each other: each would wait for the other", () => {
    const two = groupOf({
      devices: [
        { id: "gpu0", kind: "pci", flags: all },
        { id: "nic0", kind: "pci", flags: ["STOP_COPY"] },
        { id: "nic1", kind: "pci", flags: ["STOP_COPY"] }
      ]
    })
    const error = refusal(planTransition(two, { to: "STOP" }))
    expect(error).toMatchObject({
      _tag: "DependencyCycle",
      cycle: [
        { device: "nic0", from: "RUNNING", to: "STOP" },
        { device: "nic1", from: "RUNNING", to: "STOP" }
      ]
    })
    const ring = groupOf({
      devices: ["a", "b", "c"].map((id) => ({ id, kind: "pci", flags: ["STOP_COPY"] })),
      topology: {
        edges: [
          ["a", "b"],
          ["b", "c"],
          ["c", "a"]
        ]
      }
    })
    const cycle = refusal(planTransition(ring, { to: "STOP_COPY" }))
    expect(cycle._tag).toBe("DependencyCycle")
    expect(cycle._tag === "DependencyCycle" ? cycle.cycle.map((a) => a.device).sort() : []).toEqual(["a", "b", "c"])
  })

  it("orders a device without P2P that writes into others before they halt (stricter check() aside)", () => {
    const group = groupOf({
      devices: [...cliqueDoc(4).devices, { id: "nic0", kind: "pci", flags: ["STOP_COPY"] }]
    })
    const plan = planned(planTransition(group, { to: "STOP_COPY" }))
    expectSafe(plan, group, "RUNNING")
    const nicStops = arcOf(plan, "nic0", "RUNNING", "STOP")
    const after = expandAfter(plan)
    expect(after.get(nicStops.id)).toEqual(
      ["gpu0", "gpu1", "gpu2", "gpu3"].map((d) => arcOf(plan, d, "RUNNING", "RUNNING_P2P").id)
    )
    expect(after.get(arcOf(plan, "gpu2", "RUNNING_P2P", "STOP").id)).toContain(nicStops.id)
    expectSafe(planned(resumePlan(group, "STOP_COPY")), group, "STOP_COPY")
  })

  it("prints the plan of 60 000 shared-IOMMU devices (no spread of its arcs into one call)", () => {
    const n = 60_000
    const plan = planned(planTransition(groupOf(cliqueDoc(n)), { to: "STOP_COPY" }))
    const text = formatPlan(plan)
    expect(text.slice(0, text.indexOf("\n"))).toBe(`${3 * n} arcs on ${n} of ${n} devices, 3 levels, 1 barrier`)
    expect(text).toContain(`  a${3 * n}  gpu${n - 1}  STOP → STOP_COPY  after a${2 * n}`)
  })

  it("plans 1024 shared-IOMMU devices with O(N) dependencies", () => {
    const group = groupOf(cliqueDoc(1024))
    const plan = planned(planTransition(group, { to: "STOP_COPY" }))
    expect(plan.arcs.length).toBe(3 * 1024)
    expect(plan.barriers.length).toBe(1)
    const dependencies = [...plan.arcs, ...plan.barriers].reduce((n, node) => n + node.after.length, 0)
    expect(dependencies).toBe(4 * 1024)
    expect(expandAfter(plan).get(arcOf(plan, "gpu7", "RUNNING_P2P", "STOP").id)?.length).toBe(1024)
  })
})

describe("named steps", () => {
  const group = groupOf(mixedDoc)

  it("quiesce moves initiating devices with P2P to their quiescent state and leaves the rest", () => {
    const plan = planned(quiescePlan(group))
    expect(plan.target).toMatchObject({
      gpu0: "RUNNING_P2P",
      nic0: "RUNNING_P2P",
      gpu4: "RUNNING",
      vgpu0: "RUNNING",
      ccw0: "RUNNING"
    })
    expectSafe(plan, group, "RUNNING")
    const fromPrecopy = { gpu0: "PRE_COPY", gpu1: "PRE_COPY" } as const
    const precopy = planned(quiescePlan(group, fromPrecopy))
    expect(precopy.target).toMatchObject({ gpu0: "PRE_COPY_P2P", gpu1: "PRE_COPY_P2P", gpu2: "RUNNING_P2P" })
    expectSafe(precopy, group, fromPrecopy)
  })

  it("walks a whole migration: precopy, stop-copy on the source; resuming, resume on the destination", () => {
    const precopy = planned(beginPrecopyPlan(group))
    expect(precopy.target).toMatchObject({ gpu0: "PRE_COPY", gpu2: "RUNNING", nic0: "RUNNING", vgpu0: "PRE_COPY" })
    expectSafe(precopy, group, "RUNNING")
    const switchover = planned(enterStopCopyPlan(group, precopy.target))
    expect(Object.values(switchover.target).every((s) => s === "STOP_COPY")).toBe(true)
    expectSafe(switchover, group, precopy.target)
    const resuming = planned(prepareResumePlan(group))
    expectSafe(resuming, group, "RUNNING")
    const resumed = planned(resumePlan(group))
    expect(Object.values(resumed.target).every((s) => s === "RUNNING")).toBe(true)
    expectSafe(resumed, group, "RESUMING")
    const stopped = planned(stopPlan(group))
    expectSafe(stopped, group, "RUNNING")
  })
})
