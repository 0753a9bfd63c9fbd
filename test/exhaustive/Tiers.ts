import type { ErrorPolicy } from "@lockstep/coordinator"
import type { Flags, State } from "@lockstep/fsm"
import type { Fault } from "@lockstep/sim"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { judgeTransition, kernelPath, modelGroup, requestableStates, supports } from "../model/Model.js"
import { checkDecision, checkGroup, type Decided, emptyDecided } from "./Decisions.js"
import { type Exploration, emptyExploration, explore, type FaultScope } from "./Explorer.js"
import { allKinds, edgeGroupsOf, everyAssignment, flagGroupsOf, groupsOf, type SmallGroup, uniform } from "./Groups.js"
import { type MigrationGroup, type Perturbation, runMigration } from "./Migrations.js"

/**
 * The exhaustive checker's tiers, each a finite space explored completely and stopping at the
 * first problem: what `Exhaustive*.test.ts` run in CI (printing their counts) and what the
 * planted-bug tests run against a planted mistake.
 */

/** What a tier found: one line of counts, and the first problem, if any. */
export interface TierResult {
  readonly line: string
  readonly problem: string | undefined
}

type Transitions = (g: SmallGroup) => ReadonlyArray<readonly [Record<string, State>, Record<string, State>]>

const uniformGrid: Transitions = (g) =>
  requestableStates.flatMap((s) =>
    requestableStates.map((t) => [uniform(g.devices, s), uniform(g.devices, t)] as const)
  )

const everyPair: Transitions = (g) => {
  const all = everyAssignment(g.devices)
  return all.flatMap((s) => all.map((t) => [s, t] as const))
}

const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`

const decisionLine = (what: string, d: Decided, since: number): string =>
  `${what}: ${d.groups} groups, ${d.transitions} transitions (${d.accepted} planned, ${d.refused} refused), ${d.configurations} plan configurations checked in ${seconds(since)}`

const decide = (what: string, groups: ReadonlyArray<SmallGroup>, transitions: Transitions): TierResult => {
  const since = Date.now()
  const d = emptyDecided()
  for (const g of groups) {
    const { group, model } = checkGroup(g, d)
    for (const [from, to] of transitions(g)) {
      checkDecision(g, group, model, from, to, d)
      if (d.problem !== undefined) return { line: decisionLine(what, d, since), problem: d.problem }
    }
  }
  return { line: decisionLine(what, d, since), problem: d.problem }
}

/** Every group of 1-3 devices of every kind and topology description: edges and blockers. */
export const edgesTier = (): TierResult => {
  const since = Date.now()
  const d = emptyDecided()
  for (const n of [1, 2, 3])
    for (const g of groupsOf(n, allKinds)) {
      checkGroup(g, d)
      if (d.problem !== undefined) break
    }
  return {
    line: `decisions, edges and blockers: ${d.groups} group descriptions in ${seconds(since)}`,
    problem: d.problem
  }
}

// mdev, ccw and ap devices differ only in why they have no edges (checked by `edgesTier` for every kind).

/** Groups of 1-2 devices: every assignment of states to every assignment. */
export const pairsTier = (): TierResult =>
  decide(
    "decisions, 1-2 devices, every assignment",
    [...groupsOf(1, ["pci", "mdev"]), ...groupsOf(2, ["pci", "mdev"])],
    everyPair
  )

/** Groups of 3 devices: every group-wide transition. */
export const triplesTier = (): TierResult =>
  decide("decisions, 3 devices, group-wide", groupsOf(3, ["pci", "mdev"]), uniformGrid)

/** Groups of 4 pci devices, every flag set, shared IOMMU or none: every group-wide transition. */
export const quadsTier = (): TierResult =>
  decide("decisions, 4 devices, group-wide", flagGroupsOf(4, ["shared-iommu", "none"]), uniformGrid)

/**
 * The group transitions of the API, from where they start: quiesce (running or in pre-copy), stop,
 * the source's steps (pre-copy, stop-copy with or without it), the destination's (to RESUMING from
 * RUNNING or parked, and back up), and the way back after a switchover.
 */
export const apiTransitions: ReadonlyArray<readonly [State, State]> = [
  ["RUNNING", "RUNNING_P2P"],
  ["RUNNING", "STOP"],
  ["RUNNING", "PRE_COPY"],
  ["PRE_COPY", "PRE_COPY_P2P"],
  ["PRE_COPY", "STOP_COPY"],
  ["PRE_COPY_P2P", "STOP_COPY"],
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

const schedules = (what: string, groups: ReadonlyArray<SmallGroup>, scope: Scope): TierResult => {
  const since = Date.now()
  const found: Exploration = emptyExploration()
  let transitions = 0
  outer: for (const g of groups) {
    const model = modelGroup(g)
    for (const [s, t] of apiTransitions) {
      const from = uniform(g.devices, s)
      const to = uniform(g.devices, t)
      if (!judgeTransition(model.devices, model.edges, from, to).possible) continue
      transitions++
      explore({ devices: g.devices, topology: g.topology, start: from, request: to, ...scope }, found)
      if (found.problem !== undefined) break outer
    }
  }
  const outcomes = Object.entries(found.outcomes)
    .map(([k, n]) => `${k} ${n}`)
    .join(", ")
  return {
    line: `${what}: ${groups.length} groups, ${transitions} transitions, ${found.schedules} schedules (${outcomes}), ${found.states} states, ${found.pruned} orders cut at a known state, in ${seconds(since)}`,
    problem: found.problem
  }
}

/** Every group of 1-2 devices (flags and edges up to renaming). */
const smallGroups = (): ReadonlyArray<SmallGroup> => [...edgeGroupsOf(1), ...edgeGroupsOf(2)]

/** 1-2 devices: every order, a fault of each kind at every arc (reset policy). */
export const faultsTier = (): TierResult =>
  schedules("schedules with a fault at every arc", smallGroups(), {
    faults: "forward",
    interruptions: false,
    policy: "reset"
  })

/** 1-2 devices: every order, an interruption at every step (quarantine policy). */
export const interruptionsTier = (): TierResult =>
  schedules("schedules with an interruption at every step", smallGroups(), {
    faults: "none",
    interruptions: true,
    policy: "quarantine"
  })

/** Two devices with every feature and an edge: a fault at every arc, then one at every arc of the rollback. */
export const rollbackFaultsTier = (): TierResult =>
  schedules(
    "schedules with faults forward and in the rollback",
    edgeGroupsOf(2, [7]).filter((g) => typeof g.topology !== "string" && (g.topology.edges ?? []).length > 0),
    { faults: "forward and rollback", interruptions: false, policy: "quarantine" }
  )

/** Three devices with every feature, every set of edges: every order, unbounded. */
export const triplesSchedulesTier = (): TierResult =>
  schedules("schedules of 3 devices", edgeGroupsOf(3, [7]), { faults: "none", interruptions: false, policy: "reset" })

/**
 * Three devices with every feature, at most two arcs at once, in the shapes a bound changes most:
 * no edges, a one-way chain, one device writing into both others, all writing into all. (With a
 * bound the order in which arcs started is part of a state, so fewer orders merge.)
 */
export const boundedSchedulesTier = (): TierResult =>
  schedules("schedules of 3 devices, at most 2 arcs at once", boundedShapes(), {
    faults: "none",
    interruptions: false,
    policy: "reset",
    concurrency: 2
  })

const boundedShapes = (): ReadonlyArray<SmallGroup> => {
  const devices = ["d0", "d1", "d2"].map((id) => ({ id, kind: "pci" as const, flags: 7 }))
  const edges: ReadonlyArray<ReadonlyArray<readonly [string, string]>> = [
    [],
    [
      ["d0", "d1"],
      ["d1", "d2"]
    ],
    [
      ["d0", "d1"],
      ["d0", "d2"]
    ],
    [
      ["d0", "d1"],
      ["d0", "d2"],
      ["d1", "d0"],
      ["d1", "d2"],
      ["d2", "d0"],
      ["d2", "d1"]
    ]
  ]
  return edges.map((e) => ({ devices, topology: { edges: e } }))
}

const gpu = (id: string, flags = 7) => ({ id, kind: "pci" as const, flags })

/** The migration checker's groups. */
export const migrationGroups: ReadonlyArray<{ readonly name: string; readonly group: MigrationGroup }> = [
  { name: "one GPU", group: { devices: [gpu("gpu0")], topology: "shared-iommu" } },
  {
    name: "two GPUs writing into each other",
    group: { devices: [gpu("gpu0"), gpu("gpu1")], topology: "shared-iommu" }
  },
  {
    name: "a GPU writing into a NIC without P2P or pre-copy, beside a vGPU",
    group: {
      devices: [gpu("gpu0"), gpu("nic0", 1), { id: "vgpu0", kind: "mdev", flags: 5 }],
      topology: { edges: [["gpu0", "nic0"]] }
    }
  }
]

const arcFaults = (nth: number): ReadonlyArray<ReadonlyArray<Fault>> => [
  [{ _tag: "FailArc", nth, leaveIn: "original" }],
  [{ _tag: "FailArc", nth, leaveIn: "target" }],
  [{ _tag: "FailArc", nth, leaveIn: "error" }],
  [{ _tag: "HangArc", nth }],
  [
    { _tag: "HangArc", nth },
    { _tag: "LandOnInterrupt", nth, leaveIn: "target" }
  ],
  [
    { _tag: "HangArc", nth },
    { _tag: "LandOnInterrupt", nth, leaveIn: "error" }
  ]
]

/**
 * The destination's first resume arc failing on every attempt: a committed destination retries
 * a failed resume, so only a lasting fault makes it offer the group back.
 */
const resumeKeepsFailing = (flags: Flags): ReadonlyArray<ReadonlyArray<Fault>> => {
  const p = kernelPath(flags, "STOP", "RUNNING")
  const to = p.ok ? p.states[1] : undefined
  return to === undefined ? [] : [[{ _tag: "FailArc", from: "STOP", to, leaveIn: "original", times: "always" }]]
}

const dataFaults: ReadonlyArray<ReadonlyArray<Fault>> = [
  [{ _tag: "CorruptData" }],
  [{ _tag: "TruncateData" }],
  [{ _tag: "FailRead", nth: 2 }],
  [{ _tag: "FailWrite", nth: 2 }]
]

/** How many arcs a kernel path takes. */
const arcCount = (flags: Flags, from: State, to: State): number => {
  const p = kernelPath(flags, from, to)
  return p.ok ? p.states.length - 1 : 0
}

/**
 * The arcs (counted from 1, as fault plans count them) a device makes in a clean migration: on the
 * source, to PRE_COPY where it has it, then to STOP_COPY; on the destination, after parking in STOP
 * before the migration, to RESUMING, back to STOP (validation), and up to RUNNING.
 */
const migrationArcs = (side: "source" | "destination", flags: Flags): Array<number> => {
  const precopy = supports(flags, "PRE_COPY") ? "PRE_COPY" : "RUNNING"
  const first = side === "source" ? 1 : arcCount(flags, "RUNNING", "STOP") + 1
  const count =
    side === "source"
      ? arcCount(flags, "RUNNING", precopy) + arcCount(flags, precopy, "STOP_COPY")
      : arcCount(flags, "STOP", "RESUMING") + arcCount(flags, "RESUMING", "STOP") + arcCount(flags, "STOP", "RUNNING")
  return Array.from({ length: count }, (_, i) => first + i)
}

const virtual = <A>(effect: Effect.Effect<A>): Promise<A> =>
  Effect.runPromise(runOnVirtualTime(effect, { limitMs: 120_000 }).pipe(Effect.provide(TestClock.layer())))

/**
 * One migration group: a clean migration (which must commit), then the channel cut after every
 * message in either direction, then a fault of each kind at every arc each device of either side
 * makes (and each data fault of the source), one per run.
 */
export const migrationTier = async (name: string, group: MigrationGroup): Promise<TierResult> => {
  const since = Date.now()
  const clean = await virtual(runMigration(group, {}))
  if (clean.problems.length > 0 || clean.owner !== "destination")
    return {
      line: `migrations, ${name}: the clean migration failed`,
      problem: `${name}, no perturbation: ${clean.owner === "destination" ? "" : "it did not commit; "}${clean.problems.join("; ")}`
    }
  const perturbations: Array<{ readonly what: string; readonly p: Perturbation }> = []
  for (const direction of ["source", "destination"] as const)
    for (let after = 0; after <= clean.messages[direction]; after++)
      perturbations.push({ what: `cut after ${after} ${direction} messages`, p: { cut: { direction, after } } })
  for (const side of ["source", "destination"] as const)
    for (const d of group.devices) {
      const faults = [
        ...migrationArcs(side, d.flags).flatMap(arcFaults),
        ...(side === "source" ? dataFaults : resumeKeepsFailing(d.flags))
      ]
      for (const plan of faults)
        perturbations.push({ what: `${side} ${d.id}: ${JSON.stringify(plan)}`, p: { [side]: { [d.id]: plan } } })
      // Offered back without access to the source's journal, the group is the source's only once it confirms.
      if (side === "destination")
        for (const plan of resumeKeepsFailing(d.flags))
          perturbations.push({
            what: `destination ${d.id}, no shared journal: ${JSON.stringify(plan)}`,
            p: { destination: { [d.id]: plan }, sharedJournal: false }
          })
    }
  const owners = { source: 0, destination: 0 }
  for (const { what, p } of perturbations) {
    const r = await virtual(runMigration(group, p))
    owners[r.owner]++
    if (r.problems.length > 0)
      return { line: `migrations, ${name}: failed at ${what}`, problem: `${name}, ${what}: ${r.problems.join("\n")}` }
  }
  return {
    line: `migrations, ${name}: ${clean.messages.source} + ${clean.messages.destination} messages, ${perturbations.length} perturbed runs (the destination owns ${owners.destination}, the source ${owners.source}) in ${seconds(since)}`,
    problem: undefined
  }
}
