import { describe, expect, it } from "@effect/vitest"
import type { State } from "@lockstep/fsm"
import { report } from "../fuzz/Replay.js"
import { requestableStates } from "../model/Model.js"
import { checkDecision, checkGroup, type Decided, emptyDecided } from "./Decisions.js"
import { allKinds, everyAssignment, flagGroupsOf, groupsOf, type SmallGroup, uniform } from "./Groups.js"

/**
 * Exhaustive, without running anything: for every group of up to three devices (every kind, flag
 * set and topology description, once up to renaming), the coordinator's edges and blockers are the
 * model's; for every transition of every such group between two group-wide states (each device
 * adapted to what it supports), and for groups of up to two devices between any two assignments of
 * one state per device, the planner accepts exactly what the model can order, walks every kernel
 * path, and every order its plan allows keeps the invariant. Four devices where it fits: every
 * flag set, shared-IOMMU or none, group-wide transitions.
 */

const line = (what: string, d: Decided, ms: number): string =>
  `${what}: ${d.groups} groups, ${d.transitions} transitions (${d.accepted} planned, ${d.refused} refused), ${d.configurations} plan configurations checked in ${(ms / 1000).toFixed(1)} s`

const uniformGrid = (g: SmallGroup): Array<readonly [Record<string, State>, Record<string, State>]> =>
  requestableStates.flatMap((s) =>
    requestableStates.map((t) => [uniform(g.devices, s), uniform(g.devices, t)] as const)
  )

const everyPair = (g: SmallGroup): Array<readonly [Record<string, State>, Record<string, State>]> => {
  const all = everyAssignment(g.devices)
  return all.flatMap((s) => all.map((t) => [s, t] as const))
}

const decide = (
  groups: ReadonlyArray<SmallGroup>,
  transitions: (g: SmallGroup) => ReadonlyArray<readonly [Record<string, State>, Record<string, State>]>
): Decided => {
  const d = emptyDecided()
  for (const g of groups) {
    const { group, model } = checkGroup(g, d)
    for (const [from, to] of transitions(g)) {
      checkDecision(g, group, model, from, to, d)
      if (d.problem !== undefined) return d
    }
  }
  return d
}

const timed = <A>(f: () => A): readonly [A, number] => {
  const started = Date.now()
  const a = f()
  return [a, Date.now() - started]
}

describe("exhaustive: decisions for every small group", () => {
  it("every group of 1-3 devices of every kind and topology: the coordinator's edges and blockers are the model's", () => {
    const [d, ms] = timed(() => {
      const d = emptyDecided()
      for (const n of [1, 2, 3]) for (const g of groupsOf(n, allKinds)) checkGroup(g, d)
      return d
    })
    report(`decisions, edges and blockers: ${d.groups} group descriptions in ${(ms / 1000).toFixed(1)} s`)
    expect(d.problem).toBeUndefined()
    expect(d.groups).toBe(48 + 444 + 4176)
  })

  // mdev, ccw and ap devices differ only in why they have no edges (checked above for every kind).
  it("groups of 1-2 devices: every assignment of states to every assignment, planned exactly when the model can order it", () => {
    const [d, ms] = timed(() => decide([...groupsOf(1, ["pci", "mdev"]), ...groupsOf(2, ["pci", "mdev"])], everyPair))
    report(line("decisions, 1-2 devices, every assignment", d, ms))
    expect(d.problem).toBeUndefined()
  })

  it("groups of 3 devices: every group-wide transition, planned exactly when the model can order it, every order safe", () => {
    const [d, ms] = timed(() => decide(groupsOf(3, ["pci", "mdev"]), uniformGrid))
    report(line("decisions, 3 devices, group-wide", d, ms))
    expect(d.problem).toBeUndefined()
    expect(d.groups).toBe(1800)
  })

  it("groups of 4 pci devices, every flag set, shared-IOMMU or none: every group-wide transition", () => {
    const groups = flagGroupsOf(4, ["shared-iommu", "none"])
    const [d, ms] = timed(() => decide(groups, uniformGrid))
    report(line("decisions, 4 devices, group-wide", d, ms))
    expect(d.problem).toBeUndefined()
  })
})
