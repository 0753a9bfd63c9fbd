/**
 * A topological order of a dependency graph given as `after` lists (node i may start once every
 * node in `after[i]` has finished), by Kahn's algorithm. `blocked` has a positive count for
 * every node that could not be ordered: those on a cycle or waiting behind one.
 */
export const orderNodes = (
  after: ReadonlyArray<ReadonlyArray<number>>
): { readonly order: ReadonlyArray<number>; readonly blocked: Int32Array } => {
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
  return { order, blocked }
}
