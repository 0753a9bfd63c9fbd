import type { State } from "@lockstep/fsm"
import type { ModelGroup } from "./Edges.js"
import { peerClass } from "./Kernel.js"

/**
 * Whether every order a dependency graph of arcs allows keeps the invariant, decided by the model:
 * every arc starts once the nodes it waits for have finished, any number of arcs are in flight at
 * once (each counting as both its ends), and they finish in any order. Barriers (nodes without an
 * arc) finish as soon as what they wait for has. The search visits every reachable configuration
 * (which arcs have finished, which are in flight) and checks the invariant in each.
 */

/** A dependency graph as a plan gives it: arcs and barriers, each naming the nodes it waits for. */
export interface ArcGraph {
  readonly arcs: ReadonlyArray<{
    readonly id: string
    readonly device: string
    readonly from: State
    readonly to: State
    readonly after: ReadonlyArray<string>
  }>
  readonly barriers: ReadonlyArray<{ readonly id: string; readonly after: ReadonlyArray<string> }>
}

/** What the search found. */
export interface OrdersChecked {
  /** Configurations visited. */
  readonly configurations: number
  /** The first configuration that breaks the invariant, described; undefined if none does. */
  readonly unsafe: string | undefined
}

/** Checks every order `graph` allows from `start` (each device's state before the first arc). */
export const checkPlanOrders = (
  model: ModelGroup,
  start: Readonly<Record<string, State>>,
  graph: ArcGraph
): OrdersChecked => {
  const barrierAfter = new Map(graph.barriers.map((b) => [b.id, b.after] as const))
  const arcIndex = new Map(graph.arcs.map((a, i) => [a.id, i] as const))
  // Every arc's dependencies as arcs, through barriers: a barrier finishes when its own have.
  const arcDeps = (after: ReadonlyArray<string>, seen: Set<string> = new Set()): Array<number> =>
    after.flatMap((id) => {
      if (seen.has(id)) return []
      seen.add(id)
      const i = arcIndex.get(id)
      if (i !== undefined) return [i]
      return arcDeps(barrierAfter.get(id) ?? [], seen)
    })
  const deps = graph.arcs.map((a) => arcDeps(a.after))
  const n = graph.arcs.length
  const bit: Readonly<Record<string, number>> = { initiating: 1, quiesced: 2, halted: 4 }
  const deviceIndex = new Map(model.devices.map((d, i) => [d.id, i] as const))
  const arcDevice = graph.arcs.map((a) => deviceIndex.get(a.device) ?? 0)
  const arcTo = graph.arcs.map((a) => bit[peerClass[a.to]] ?? 0)
  const startBits = model.devices.map((d) => bit[peerClass[start[d.id] ?? "RUNNING"]] ?? 0)
  const edges = model.edges.map(([a, b]) => [deviceIndex.get(a) ?? 0, deviceIndex.get(b) ?? 0] as const)
  // Per arc: 0 waiting, 1 in flight, 2 finished.
  const visited = new Set<number>()
  const stack: Array<Uint8Array> = [new Uint8Array(n)]
  const at = new Int32Array(model.devices.length)
  const flying = new Int32Array(model.devices.length)
  while (stack.length > 0) {
    const status = stack.pop() ?? new Uint8Array(0)
    let key = 0
    for (let i = n - 1; i >= 0; i--) key = key * 3 + (status[i] ?? 0)
    if (visited.has(key)) continue
    visited.add(key)
    // A device's arcs are chained, so its last finished arc (in plan order) says where it is.
    startBits.forEach((b, d) => {
      at[d] = b
      flying[d] = 0
    })
    for (let i = 0; i < n; i++) {
      const d = arcDevice[i] ?? 0
      if (status[i] === 2) at[d] = arcTo[i] ?? 0
      else if (status[i] === 1) flying[d] = arcTo[i] ?? 0
    }
    for (const [a, b] of edges)
      if ((((at[a] ?? 0) | (flying[a] ?? 0)) & 1) !== 0 && (((at[b] ?? 0) | (flying[b] ?? 0)) & 4) !== 0) {
        const what = graph.arcs
          .map((arc, i) => (status[i] === 1 ? `${arc.id} ${arc.device} ${arc.from}→${arc.to} in flight` : ""))
          .filter((s) => s !== "")
        const done = graph.arcs.filter((_, i) => status[i] === 2).map((arc) => arc.id)
        return {
          configurations: visited.size,
          unsafe: `${model.devices[a]?.id} may write into ${model.devices[b]?.id} while it is halted, with ${done.join(",") || "nothing"} finished and ${what.join(", ") || "nothing in flight"}`
        }
      }
    for (let i = 0; i < n; i++) {
      if (status[i] === 1) {
        const next = Uint8Array.from(status)
        next[i] = 2
        stack.push(next)
      } else if (status[i] === 0 && (deps[i] ?? []).every((d) => status[d] === 2)) {
        const next = Uint8Array.from(status)
        next[i] = 1
        stack.push(next)
      }
    }
  }
  return { configurations: visited.size, unsafe: undefined }
}
