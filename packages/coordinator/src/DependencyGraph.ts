import { Graph, Option } from "effect"

/**
 * A topological order of a dependency graph given as `after` lists (node i may start once every
 * node in `after[i]` has finished), by Kahn's algorithm. Shorter than the graph when some nodes
 * could not be ordered: those on a cycle or waiting behind one (`findWaitCycle` names a cycle).
 *
 * Written out rather than `Graph.topo` of effect/Graph, because every plan is ordered and the
 * library form costs far more than the 20% allowed. Measured 2026-12-05 (RUNNING → STOP_COPY,
 * 2-core machine at load 7–9, two runs): ordering alone, Kahn vs building the Graph and
 * `Graph.topo`, shared-IOMMU clique of 1024 devices (3073 nodes) 1.0–2.0 ms vs 38–47 ms, of 4096
 * devices 2.0–18.7 ms vs 144–213 ms, a chain of 1024 0.8–3.6 ms vs 43–49 ms; the whole plan with
 * the library form costs +48% to +104% (clique 1024: 44 ms vs ≈90 ms), +108% to +185% (clique
 * 4096), +183% to +225% (chain 1024: 21 ms vs ≈62–69 ms).
 */
export const orderNodes = (after: ReadonlyArray<ReadonlyArray<number>>): ReadonlyArray<number> => {
  const n = after.length
  const blocked = new Int32Array(n)
  const next: Array<Array<number>> = after.map(() => [])
  after.forEach((deps, i) => {
    blocked[i] = deps.length
    for (const p of deps) next[p]?.push(i)
  })
  const order: Array<number> = []
  for (let i = 0; i < n; i++) if (blocked[i] === 0) order.push(i)
  for (let k = 0; k < order.length; k++) {
    for (const s of next[order[k] ?? 0] ?? []) {
      blocked[s] = (blocked[s] ?? 0) - 1
      if (blocked[s] === 0) order.push(s)
    }
  }
  return order
}

/**
 * A cycle of waits in a dependency graph given as `after` lists, by `Graph.findCycle`: node
 * indices in which each waits for the next and the last for the first, or `undefined` when the
 * graph is acyclic. Only asked once ordering has failed, so its cost never touches a plan.
 */
export const findWaitCycle = (after: ReadonlyArray<ReadonlyArray<number>>): ReadonlyArray<number> | undefined => {
  // An edge i → p for every wait: a cycle of edges is a cycle of waits, in the order of waiting.
  const graph = Graph.directed<number, undefined>((mutable) => {
    const index = after.map((_, i) => Graph.addNode(mutable, i))
    after.forEach((deps, i) => {
      for (const p of deps) {
        const from = index[i]
        const to = index[p]
        if (from !== undefined && to !== undefined) Graph.addEdge(mutable, from, to, undefined)
      }
    })
  })
  return Option.getOrUndefined(
    Option.map(Graph.findCycle(graph), (cycle) =>
      cycle.path.slice(0, -1).flatMap((node) => Option.toArray(Graph.getNode(graph, node)))
    )
  )
}
