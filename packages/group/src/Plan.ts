import type { State } from "@lockstep/fsm"

/**
 * One arc of one device's kernel path, as a node of the plan's dependency graph. The arc may
 * start once every node in `after` has finished.
 */
export interface PlanArc {
  readonly _tag: "Arc"
  /** `a1`, `a2`, …: numbered by level, then group order, then position in the device's path. */
  readonly id: string
  readonly device: string
  readonly from: State
  readonly to: State
  /**
   * The nodes (arcs and barriers) that must finish before this arc starts, arcs first, by id.
   * The device's own previous arc is always among them.
   */
  readonly after: ReadonlyArray<string>
  /** 1 + the level of the deepest arc this one waits for (through barriers): 1 for arcs that wait for nothing. */
  readonly level: number
}

/**
 * What a barrier stands for, in one P2P domain:
 * - `InitiatorsQuiesced`: every member that was initiating has left the initiating states
 *   (the join the members' arcs into halted states wait for);
 * - `TargetsUnhalted`: every member that was halted has left the halted states (the join the
 *   members' arcs into initiating states wait for).
 */
export type BarrierKind = "InitiatorsQuiesced" | "TargetsUnhalted"

/**
 * A join node: it takes no time and finishes as soon as every node in `after` has finished.
 * Barriers keep a clique's dependencies O(N): N arcs wait for one barrier that waits for N
 * arcs, instead of N arcs each waiting for N-1 arcs.
 */
export interface Barrier {
  readonly _tag: "Barrier"
  /** `b1`, `b2`, …: numbered by level, then creation order. */
  readonly id: string
  readonly kind: BarrierKind
  /** The members of the P2P domain this barrier joins. */
  readonly domain: ReadonlyArray<string>
  /**
   * A device left out of the join because its own arc is both a source and a waiter (a device
   * without P2P goes RUNNING → STOP in one arc): it waits for this barrier, everyone else for
   * a second barrier that adds its arc.
   */
  readonly except: string | undefined
  readonly after: ReadonlyArray<string>
  /** The level of the deepest arc this barrier waits for. */
  readonly level: number
}

/** A node of the plan's dependency graph. */
export type PlanNode = PlanArc | Barrier

/**
 * A group transition as a dependency graph: each device walks its own kernel path, one arc at
 * a time, and an arc starts only when the nodes it waits for have finished. Arcs are in id
 * order, which is a topological order; so are barriers.
 */
export interface Plan {
  readonly arcs: ReadonlyArray<PlanArc>
  readonly barriers: ReadonlyArray<Barrier>
  /** Each device's state before the plan, in group order. */
  readonly initial: Readonly<Record<string, State>>
  /** Each device's state after the plan, in group order (devices that do not move included). */
  readonly target: Readonly<Record<string, State>>
}

/**
 * The JSON form of a plan, as the CLI prints it. Each node's `after` lists the ids it waits
 * for directly, arcs (`a…`) and barriers (`b…`); a barrier is a join that finishes when all of
 * its own `after` have. An arc's dependencies are the transitive expansion of its `after`
 * through barriers (`expandAfter`). The size is linear in the plan: a clique of N devices has
 * N arcs waiting for one barrier that waits for N arcs, not N arcs each listing N.
 */
export interface PlanJson {
  readonly arcs: ReadonlyArray<{
    readonly id: string
    readonly device: string
    readonly from: State
    readonly to: State
    readonly after: ReadonlyArray<string>
  }>
  readonly barriers: ReadonlyArray<{ readonly id: string; readonly after: ReadonlyArray<string> }>
}

const idNumber = (id: string): number => Number(id.slice(1))

/**
 * For every node id, the arcs it waits for with barriers expanded (direct arc dependencies
 * plus the arcs of the barriers it waits for, transitively through barriers only), by id.
 * A clique's expansion is O(N²): this is for display, never for running a plan.
 */
export const expandAfter = (plan: Pick<PlanJson, "arcs" | "barriers">): ReadonlyMap<string, ReadonlyArray<string>> => {
  const barriers = new Map(plan.barriers.map((b) => [b.id, b]))
  const expanded = new Map<string, ReadonlyArray<string>>()
  const expand = (after: ReadonlyArray<string>, visiting: Set<string>): ReadonlyArray<string> => {
    const arcs = new Set<string>()
    for (const id of after) {
      const barrier = barriers.get(id)
      if (barrier === undefined) arcs.add(id)
      else if (!visiting.has(id)) {
        visiting.add(id)
        const inner = expanded.get(id) ?? expand(barrier.after, visiting)
        expanded.set(id, inner)
        for (const a of inner) arcs.add(a)
      }
    }
    return [...arcs].sort((x, y) => idNumber(x) - idNumber(y))
  }
  const out = new Map<string, ReadonlyArray<string>>()
  for (const arc of plan.arcs) out.set(arc.id, expand(arc.after, new Set()))
  for (const barrier of plan.barriers) out.set(barrier.id, expanded.get(barrier.id) ?? expand(barrier.after, new Set()))
  return out
}

/**
 * The JSON form of a plan: `{"arcs":[{"id":"a1","device":"gpu0","from":"RUNNING","to":"RUNNING_P2P","after":[]},…],
 * "barriers":[{"id":"b1","after":["a1","a2",…]}]}`, each `after` as the plan has it (see `PlanJson`).
 */
export const planJson = (plan: Plan): PlanJson => ({
  arcs: plan.arcs.map((a) => ({ id: a.id, device: a.device, from: a.from, to: a.to, after: a.after })),
  barriers: plan.barriers.map((b) => ({ id: b.id, after: b.after }))
})

/** Lists longer than this are shortened in `formatPlan` (first ids, `…`, last id, count). */
const shownIds = 8

const idList = (ids: ReadonlyArray<string>): string =>
  ids.length <= shownIds
    ? ids.join(", ")
    : `${ids.slice(0, shownIds - 2).join(", ")}, …, ${ids.at(-1) ?? ""} (${ids.length})`

const barrierMeaning: Record<BarrierKind, string> = {
  InitiatorsQuiesced: "initiators quiesced",
  TargetsUnhalted: "targets out of halted"
}

/**
 * A readable rendering of a plan: arcs by level with what each waits for, then the barriers
 * with their meaning, then the devices the plan leaves where they are. Dependency lists longer
 * than 8 are shortened to their first ids, `…`, the last id and the count.
 */
export const formatPlan = (plan: Plan): string => {
  const devices = Object.keys(plan.initial)
  // Folds, not Math.max(...spread): a spread of a large group's arcs overflows the call stack.
  const width = plan.arcs.reduce((w, a) => Math.max(w, a.device.length), 0)
  const idWidth = [...plan.arcs, ...plan.barriers].reduce((w, n) => Math.max(w, n.id.length), 2)
  const levels = plan.arcs.reduce((l, a) => Math.max(l, a.level), 0)
  const moving = new Set(plan.arcs.map((a) => a.device))
  const lines: Array<string> = [
    `${plan.arcs.length} arc${plan.arcs.length === 1 ? "" : "s"} on ${moving.size} of ${devices.length} device${devices.length === 1 ? "" : "s"}, ${levels} level${levels === 1 ? "" : "s"}, ${plan.barriers.length} barrier${plan.barriers.length === 1 ? "" : "s"}`
  ]
  let level = 0
  for (const arc of plan.arcs) {
    if (arc.level !== level) {
      level = arc.level
      lines.push(`level ${level}`)
    }
    const waits = arc.after.length === 0 ? "" : `  after ${idList(arc.after)}`
    lines.push(`  ${arc.id.padEnd(idWidth)}  ${arc.device.padEnd(width)}  ${arc.from} → ${arc.to}${waits}`)
  }
  if (plan.barriers.length > 0) lines.push("barriers")
  for (const b of plan.barriers) {
    const except = b.except === undefined ? "" : `, except ${b.except}`
    lines.push(
      `  ${b.id.padEnd(idWidth)}  ${barrierMeaning[b.kind]} in P2P domain {${idList(b.domain)}}${except}: after ${idList(b.after)}`
    )
  }
  const still = devices.filter((d) => !moving.has(d))
  if (still.length > 0) lines.push(`unchanged: ${idList(still.map((d) => `${d} (${plan.initial[d] ?? "?"})`))}`)
  return lines.join("\n")
}
