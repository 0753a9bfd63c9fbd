import { decodeGroup, type Group, Migratability, planTransition } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { Effect, Result } from "effect"
import { blockersOf, checkPlanOrders, judgeTransition, type ModelGroup, modelGroup } from "../model/Model.js"
import type { SmallGroup } from "./Groups.js"

/**
 * The planner, the topology and the migratability rule judged by the model, without running
 * anything: for a group description, its edges and blockers; for a transition, whether the planner
 * accepts exactly what the model can order (refusing with a cause of the model's kind), whether its
 * plan walks every device's kernel path, and whether every order the plan allows keeps the invariant.
 */

/** Counts of what was decided. */
export interface Decided {
  groups: number
  transitions: number
  accepted: number
  refused: number
  /** Configurations the plan-order search visited, summed. */
  configurations: number
  problem: string | undefined
}

export const emptyDecided = (): Decided => ({
  groups: 0,
  transitions: 0,
  accepted: 0,
  refused: 0,
  configurations: 0,
  problem: undefined
})

const describeGroup = (g: SmallGroup): string =>
  `${g.devices.map((d) => `${d.id}:${d.kind}/${d.flags}`).join(" ")} topology ${JSON.stringify(g.topology)}`

/** Decodes a group description as the coordinator does. */
export const decoded = (g: SmallGroup): Group =>
  Effect.runSync(Effect.orDie(decodeGroup({ devices: g.devices.map((d) => ({ ...d })), topology: g.topology })))

/** The coordinator's edges and blockers against the model's, for one group description. */
export const checkGroup = (g: SmallGroup, into: Decided): { readonly group: Group; readonly model: ModelGroup } => {
  const group = decoded(g)
  const model = modelGroup(g)
  into.groups++
  const edges = [...group.topology.edges()].map(([a, b]) => `${a}>${b}`).sort()
  const expected = model.edges.map(([a, b]) => `${a}>${b}`).sort()
  if (into.problem === undefined && edges.join() !== expected.join())
    into.problem = `${describeGroup(g)}: the topology has edges ${edges.join(",") || "none"}, the model ${expected.join(",") || "none"}`
  const blockers = Migratability.check(group).blockers.map((b) => b.device)
  const modelBlockers = blockersOf(model.devices, model.edges)
  if (into.problem === undefined && blockers.join() !== modelBlockers.join())
    into.problem = `${describeGroup(g)}: blockers ${blockers.join(",") || "none"}, the model ${modelBlockers.join(",") || "none"}`
  return { group, model }
}

/** The planner's answer to one transition against the model's. */
export const checkDecision = (
  g: SmallGroup,
  group: Group,
  model: ModelGroup,
  from: Readonly<Record<string, State>>,
  to: Readonly<Record<string, State>>,
  into: Decided
): void => {
  into.transitions++
  const verdict = judgeTransition(model.devices, model.edges, from, to)
  const planned = planTransition(group, { from, to })
  const what = () => `${describeGroup(g)}: ${JSON.stringify(from)} → ${JSON.stringify(to)}`
  if (Result.isFailure(planned)) {
    into.refused++
    if (verdict.possible)
      into.problem ??= `${what()}: the planner refuses (${planned.failure.message}), the model orders it: ${verdict.order.join(", ")}`
    else {
      const kernel = verdict.why._tag === "KernelRefuses"
      if (kernel !== (planned.failure.reason._tag === "PathRefused"))
        into.problem ??= `${what()}: the planner refuses with ${planned.failure._tag}, the model says ${verdict.why._tag}`
    }
    return
  }
  into.accepted++
  if (!verdict.possible) {
    into.problem ??= `${what()}: the planner plans what the model finds impossible (${verdict.why._tag})`
    return
  }
  const plan = planned.success
  for (const d of model.devices) {
    const walked = [from[d.id] ?? "RUNNING"]
    for (const arc of plan.arcs.filter((a) => a.device === d.id)) {
      if (arc.from !== walked.at(-1)) break
      walked.push(arc.to)
    }
    if (walked.join() !== (verdict.paths[d.id] ?? []).join())
      into.problem ??= `${what()}: the plan walks ${d.id} ${walked.join(" → ")}, the kernel ${(verdict.paths[d.id] ?? []).join(" → ")}`
  }
  const orders = checkPlanOrders(model, from, plan)
  into.configurations += orders.configurations
  if (orders.unsafe !== undefined)
    into.problem ??= `${what()}: an order the plan allows breaks the invariant: ${orders.unsafe}`
}
