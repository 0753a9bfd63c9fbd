import { describe, expect, it } from "@effect/vitest"
import {
  expandAfter,
  type Group,
  type Plan,
  type PlanViolation,
  planTransition,
  type StateAssignment,
  verifyPlan
} from "@lockstep/coordinator"
import { type State, States } from "@lockstep/fsm"
import { Result } from "effect"
import * as fc from "fast-check"
import {
  cliqueDoc,
  crossDependencies,
  groupDocArb,
  groupOf,
  largeGroupArb,
  requestArb,
  withoutDependency
} from "./groups.js"
import { chooser, explore, simulate } from "./simulation.js"

const planOf = (group: Group, request: { from?: StateAssignment; to: StateAssignment }): Plan =>
  Result.getOrThrow(planTransition(group, request))

const violationsOf = (plan: Plan, group: Group, initial: StateAssignment = "RUNNING"): ReadonlyArray<PlanViolation> => {
  const verdict = verifyPlan(plan, group, initial)
  return Result.isFailure(verdict) ? verdict.failure.violations : []
}

const statesOf = (group: Group, assignment: StateAssignment | undefined): Record<string, State> =>
  Object.fromEntries(
    group.devices.map((d) => [
      d.id,
      assignment === undefined
        ? "RUNNING"
        : typeof assignment === "string"
          ? assignment
          : (assignment[d.id] ?? "RUNNING")
    ])
  )

/** The plan with every dependency expanded through barriers, and no barriers. */
const expanded = (plan: Plan): Plan => {
  const after = expandAfter(plan)
  return { ...plan, arcs: plan.arcs.map((a) => ({ ...a, after: after.get(a.id) ?? [] })), barriers: [] }
}

const nicIntoGpu = groupOf({
  devices: [
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] }
  ],
  topology: { edges: [["nic0", "gpu0"]] }
})

describe("verifyPlan", () => {
  it("rejects a plan with a dependency removed, naming the edge and the two arcs", () => {
    const plan = planOf(nicIntoGpu, { to: "STOP_COPY" })
    expect(verifyPlan(plan, nicIntoGpu)).toEqual(Result.void)
    // a1: nic0 RUNNING → RUNNING_P2P, a4: gpu0 RUNNING_P2P → STOP, which waits for a1 and a2.
    const broken = withoutDependency(plan, "a4", "a1")
    const [violation, ...rest] = violationsOf(broken, nicIntoGpu)
    expect(rest).toEqual([])
    expect(violation?._tag).toBe("Overlap")
    if (violation?._tag !== "Overlap") return
    expect(violation.edge).toEqual(["nic0", "gpu0"])
    expect(violation.initiatorArc?.id).toBe("a1")
    expect(violation.targetArc?.id).toBe("a4")
    expect(violation.message).toBe(
      "edge nic0 → gpu0: nic0 may be initiating from the start until a1 (RUNNING → RUNNING_P2P) while gpu0 is halted from a4 (RUNNING_P2P → STOP) on, and no dependency orders them"
    )
    expect(explore(broken, nicIntoGpu, statesOf(nicIntoGpu, "RUNNING"))).toBeDefined()
  })

  it("rejects a clique plan with one barrier input removed", () => {
    const group = groupOf(cliqueDoc(8))
    const plan = planOf(group, { to: "STOP" })
    const [barrier] = plan.barriers
    const dep = barrier?.after[3] ?? ""
    const violations = violationsOf(withoutDependency(plan, barrier?.id ?? "", dep), group)
    expect(violations.length).toBe(7)
    expect(violations.every((v) => v._tag === "Overlap" && v.initiatorArc?.id === dep)).toBe(true)
  })

  it("rejects arcs of one device that may overlap, skip a state, or are not legal arcs", () => {
    const plan = planOf(nicIntoGpu, { to: "STOP" })
    expect(violationsOf(withoutDependency(plan, "a3", "a1"), nicIntoGpu)).toMatchObject([
      { _tag: "BrokenPath", device: "nic0", arc: "a3", reason: "may run at the same time as a1" }
    ])
    expect(violationsOf(plan, nicIntoGpu, { gpu0: "STOP" })).toMatchObject([
      { _tag: "BrokenPath", device: "gpu0", arc: "a2", reason: "starts from RUNNING, but the device is in STOP" }
    ])
    const skipping: Plan = {
      ...plan,
      arcs: plan.arcs.map((a) => (a.id === "a1" ? { ...a, to: "STOP" } : a.id === "a3" ? { ...a, from: "STOP" } : a))
    }
    expect(violationsOf(skipping, nicIntoGpu)).toMatchObject([
      {
        _tag: "BrokenPath",
        device: "nic0",
        arc: "a1",
        reason: "RUNNING → STOP is not one legal arc for the device's flags"
      },
      {
        _tag: "BrokenPath",
        device: "nic0",
        arc: "a3",
        reason: "STOP → STOP is not one legal arc for the device's flags"
      }
    ])
  })

  it("rejects malformed graphs: unknown dependencies, duplicate ids, cycles, unknown devices", () => {
    const plan = planOf(nicIntoGpu, { to: "STOP" })
    const edit = (id: string, after: ReadonlyArray<string>): Plan => ({
      ...plan,
      arcs: plan.arcs.map((a) => (a.id === id ? { ...a, after } : a))
    })
    expect(violationsOf(edit("a1", ["a9"]), nicIntoGpu)).toMatchObject([
      { _tag: "BadDependency", node: "a1", reason: "waits for a9, which is not in the plan" }
    ])
    // a3 (nic0 RUNNING_P2P → STOP) follows a1 (nic0 RUNNING → RUNNING_P2P) on nic0's path: made
    // to wait for a3, a1 closes the cycle; a4 (gpu0's stop) only waits behind it, outside it.
    expect(violationsOf(edit("a1", ["a3"]), nicIntoGpu)).toMatchObject([
      { _tag: "BadDependency", node: "a1", reason: "a dependency cycle: a1 waits for a3 waits for a1" }
    ])
    const twice: Plan = { ...plan, arcs: [...plan.arcs, ...plan.arcs.slice(0, 1)] }
    expect(violationsOf(twice, nicIntoGpu)).toMatchObject([
      { _tag: "BadDependency", node: "a1", reason: "the id is used twice" }
    ])
    const stranger: Plan = { ...plan, arcs: plan.arcs.map((a) => (a.id === "a2" ? { ...a, device: "gpu9" } : a)) }
    expect(violationsOf(stranger, nicIntoGpu)).toMatchObject([{ _tag: "BrokenPath", device: "gpu9", arc: "a2" }])
  })

  it("accepts a 256-device clique plan and its barrier-free expansion", () => {
    const group = groupOf(cliqueDoc(256))
    const plan = planOf(group, { to: "STOP_COPY" })
    expect(verifyPlan(plan, group)).toEqual(Result.void)
    expect(verifyPlan(expanded(plan), group)).toEqual(Result.void)
    const back = planOf(group, { from: "STOP_COPY", to: "RUNNING" })
    expect(verifyPlan(back, group, "STOP_COPY")).toEqual(Result.void)
  })
})

describe("plans against brute force", () => {
  it("agrees with an exhaustive search of every execution, for plans and plans missing a dependency", () => {
    fc.assert(
      fc.property(
        groupDocArb(6)
          .map(groupOf)
          .chain((group) => fc.tuple(fc.constant(group), requestArb(group.devices))),
        ([group, request]) => {
          const result = planTransition(group, request)
          if (Result.isFailure(result)) {
            expect(["UnsafeEdge", "DependencyCycle", "PathRefused"]).toContain(result.failure.reason._tag)
            return
          }
          const plan = result.success
          const initial = statesOf(group, request.from)
          expect(verifyPlan(plan, group, request.from)).toEqual(Result.void)
          expect(explore(plan, group, initial)).toBeUndefined()
          expect(verifyPlan(expanded(plan), group, request.from)).toEqual(Result.void)
          for (const { node, dep } of crossDependencies(plan)) {
            const broken = withoutDependency(plan, node, dep)
            const unsafe = explore(broken, group, initial)
            expect(Result.isSuccess(verifyPlan(broken, group, request.from)), `${node} without ${dep}: ${unsafe}`).toBe(
              unsafe === undefined
            )
          }
        }
      ),
      { numRuns: 600 }
    )
  })

  it("agrees with an exhaustive search on cliques planned through barriers", () => {
    const groups = [
      groupOf(cliqueDoc(4)),
      groupOf({ devices: [...cliqueDoc(3).devices, { id: "nic0", kind: "pci", flags: ["STOP_COPY", "PRE_COPY"] }] }),
      groupOf({
        devices: cliqueDoc(5).devices.map((d, i) => (i % 2 === 0 ? d : { ...d, flags: ["STOP_COPY", "P2P"] }))
      })
    ]
    let barriers = 0
    for (const group of groups) {
      for (const from of ["RUNNING", "RESUMING", "STOP_COPY", "RUNNING_P2P"] as const) {
        for (const to of States.filter((s) => s !== "ERROR")) {
          const result = planTransition(group, { from, to })
          if (Result.isFailure(result)) continue
          const plan = result.success
          barriers += plan.barriers.length
          const initial = statesOf(group, from)
          expect(verifyPlan(plan, group, from)).toEqual(Result.void)
          expect(explore(plan, group, initial)).toBeUndefined()
          for (const { node, dep } of crossDependencies(plan)) {
            const broken = withoutDependency(plan, node, dep)
            const unsafe = explore(broken, group, initial)
            expect(Result.isSuccess(verifyPlan(broken, group, from)), `${from} → ${to}: ${node} without ${dep}`).toBe(
              unsafe === undefined
            )
          }
        }
      }
    }
    expect(barriers).toBeGreaterThan(10)
  })

  it("agrees with random executions on larger groups", () => {
    let caught = 0
    fc.assert(
      fc.property(largeGroupArb, fc.nat(), fc.nat(), ([group, request], seed, pick) => {
        const plan = planOf(group, request)
        const initial = statesOf(group, request.from)
        expect(verifyPlan(plan, group, request.from)).toEqual(Result.void)
        for (let run = 0; run < 8; run++) expect(simulate(plan, group, initial, chooser(seed + run))).toBeUndefined()
        const cross = crossDependencies(plan)
        const removed = cross[pick % Math.max(1, cross.length)]
        if (removed === undefined) return
        const broken = withoutDependency(plan, removed.node, removed.dep)
        const accepted = Result.isSuccess(verifyPlan(broken, group, request.from))
        for (let run = 0; run < 8; run++) {
          const unsafe = simulate(broken, group, initial, chooser(seed + run))
          if (unsafe === undefined) continue
          expect(accepted, unsafe).toBe(false)
          caught++
        }
      }),
      { numRuns: 150 }
    )
    expect(caught).toBeGreaterThan(0)
  })
})
