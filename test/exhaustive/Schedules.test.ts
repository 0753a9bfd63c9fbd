import { describe, expect, it } from "@effect/vitest"
import type { ErrorPolicy } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { report } from "../fuzz/Replay.js"
import { judgeTransition, modelGroup } from "../model/Model.js"
import { type Exploration, emptyExploration, explore, type FaultScope } from "./Explorer.js"
import { edgeGroupsOf, type SmallGroup, uniform } from "./Groups.js"

/**
 * Exhaustive runs of the real executor (planner, arc runner, rollback) on devices whose every arc
 * ends as the explorer chooses (`ExploredDevice.ts`), each run judged by the oracle against the
 * reference model, the invariant checked at every device event:
 * - every group of one or two devices (every flag set, every set of edges, up to renaming: kinds
 *   and topology descriptions reach the executor only as edges, and the decisions check those for
 *   every kind and description) through every group transition of the API (the named steps and
 *   the migration's, from where they start): every order in which the arcs land, with a fault of
 *   each kind at every arc; and every order with an interruption at every step;
 * - two-device groups with every feature, one-way or both ways: a fault at every arc and then a
 *   fault of each kind at every arc of the rollback, in every order;
 * - three devices with every feature, every set of edges: every order, unbounded and one arc at a time.
 * Orders that reach a group state already explored are cut there (see `Explorer.ts`).
 */

/** The group transitions of the API: quiesce, stop, the source's and the destination's steps, and the way back. */
const apiTransitions: ReadonlyArray<readonly [State, State]> = [
  ["RUNNING", "RUNNING_P2P"],
  ["RUNNING", "STOP"],
  ["RUNNING", "PRE_COPY"],
  ["PRE_COPY", "STOP_COPY"],
  ["RUNNING", "STOP_COPY"],
  ["RUNNING", "RESUMING"],
  ["STOP", "RESUMING"],
  ["RESUMING", "RUNNING"],
  ["STOP_COPY", "RUNNING"]
]

interface Scope {
  readonly faults: FaultScope
  readonly interruptions: boolean
  readonly policy: ErrorPolicy
  readonly concurrency?: number
}

const exploreAll = (
  groups: ReadonlyArray<SmallGroup>,
  scope: Scope
): { found: Exploration; transitions: number; ms: number } => {
  const started = Date.now()
  const found = emptyExploration()
  let transitions = 0
  for (const g of groups) {
    const model = modelGroup(g)
    for (const [s, t] of apiTransitions) {
      const from = uniform(g.devices, s)
      const to = uniform(g.devices, t)
      if (!judgeTransition(model.devices, model.edges, from, to).possible) continue
      transitions++
      explore({ devices: g.devices, topology: g.topology, start: from, request: to, ...scope }, found)
      if (found.problem !== undefined) return { found, transitions, ms: Date.now() - started }
    }
  }
  return { found, transitions, ms: Date.now() - started }
}

const line = (what: string, groups: number, r: ReturnType<typeof exploreAll>): string => {
  const outcomes = Object.entries(r.found.outcomes)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ")
  return `${what}: ${groups} groups, ${r.transitions} transitions, ${r.found.schedules} schedules (${outcomes}), ${r.found.states} states, ${r.found.pruned} orders cut at a known state, in ${(r.ms / 1000).toFixed(1)} s`
}

const small = [...edgeGroupsOf(1), ...edgeGroupsOf(2)]

describe("exhaustive: schedules of every small group", () => {
  it("1-2 devices: every order, a fault of each kind at every arc (reset policy)", () => {
    const r = exploreAll(small, { faults: "forward", interruptions: false, policy: "reset" })
    report(line("schedules with a fault at every arc", small.length, r))
    expect(r.found.problem).toBeUndefined()
  })

  it("1-2 devices: every order, an interruption at every step, arcs in flight cancelled or landing (quarantine policy)", () => {
    const r = exploreAll(small, { faults: "none", interruptions: true, policy: "quarantine" })
    report(line("schedules with an interruption at every step", small.length, r))
    expect(r.found.problem).toBeUndefined()
  })

  it("2 devices with every feature: a fault at every arc, then one of each kind at every arc of the rollback (quarantine policy)", () => {
    const groups = edgeGroupsOf(2, [7]).filter(
      (g) => typeof g.topology !== "string" && (g.topology.edges ?? []).length > 0
    )
    const r = exploreAll(groups, { faults: "forward and rollback", interruptions: false, policy: "quarantine" })
    report(line("schedules with faults forward and in the rollback", groups.length, r))
    expect(r.found.problem).toBeUndefined()
  })

  it("3 devices with every feature, every set of edges: every order, unbounded and one arc at a time", () => {
    const groups = edgeGroupsOf(3, [7])
    const unbounded = exploreAll(groups, { faults: "none", interruptions: false, policy: "reset" })
    report(line("schedules of 3 devices", groups.length, unbounded))
    expect(unbounded.found.problem).toBeUndefined()
    const serial = exploreAll(groups, { faults: "none", interruptions: false, policy: "reset", concurrency: 1 })
    report(line("schedules of 3 devices, one arc at a time", groups.length, serial))
    expect(serial.found.problem).toBeUndefined()
  })
})
