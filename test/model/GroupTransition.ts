import type { State } from "@lockstep/fsm"
import type { ModelDevice, ModelEdge } from "./Edges.js"
import { kernelPath, type PeerClass, peerClass } from "./Kernel.js"

/**
 * Whether a group transition must be possible, decided by searching the model's own state space
 * (never by asking a planner).
 *
 * Each device follows its own kernel path (DESIGN.md section 2). The safety invariant must hold at
 * every instant, for every edge a → b: not (b halted and a initiating), a device with an arc in
 * flight counting as being in both ends of the arc. A transition is possible iff some order of the
 * devices' arcs keeps it.
 *
 * Serial orders suffice: if any schedule with overlapping arcs is safe, so is the schedule that
 * performs the same arcs one at a time in the order they started. At each instant of the serial
 * schedule every device is in one state that the overlapping schedule also had it in (or in flight
 * through), at the moment the corresponding arc started there; more states only make the
 * invariant harder to keep. So the search moves one device one arc at a time, the moving device
 * counting as both ends of its arc.
 */

/** A group state assignment: one state for all, or a state per device (a device left out keeps its state). */
export type Assignment = State | Readonly<Record<string, State>>

/** The state `assignment` gives device `id`, or `fallback`. */
export const stateIn = (assignment: Assignment, id: string, fallback: State): State =>
  typeof assignment === "string" ? assignment : Object.hasOwn(assignment, id) ? (assignment[id] ?? fallback) : fallback

/** Why the model says a transition cannot be made. */
export type Impossible =
  /** The kernel refuses one device's combination transition. */
  | { readonly _tag: "KernelRefuses"; readonly device: string; readonly reason: string }
  /** An edge breaks the invariant before anything moves. */
  | { readonly _tag: "UnsafeStart"; readonly edge: ModelEdge }
  /** An edge would break the invariant once every device arrived. */
  | { readonly _tag: "UnsafeEnd"; readonly edge: ModelEdge }
  /** Both ends are safe, but every order of arcs breaks the invariant on the way. */
  | { readonly _tag: "NoSafeOrder" }

/** The model's verdict on a group transition. */
export type Verdict =
  | {
      readonly possible: true
      /** Every device's kernel path. */
      readonly paths: Readonly<Record<string, ReadonlyArray<State>>>
      /** Where every device ends. */
      readonly target: Readonly<Record<string, State>>
      /** One safe serial order of the arcs, as device ids. */
      readonly order: ReadonlyArray<string>
    }
  | { readonly possible: false; readonly why: Impossible }

const initiating = 1
const quiesced = 2
const halted = 4
const bit: Readonly<Record<PeerClass, number>> = { initiating, quiesced, halted }

/** The largest number of group states one search may visit before the model gives up (it never should). */
const searchLimit = 2_000_000

/**
 * A device's path as the sequence of peer classes it passes through (equal neighbours merged):
 * arcs that keep a class change nothing the invariant sees.
 */
const classSteps = (states: ReadonlyArray<State>): Array<number> => {
  const out: Array<number> = []
  for (const s of states) {
    const b = bit[peerClass[s]]
    if (out.at(-1) !== b) out.push(b)
  }
  return out
}

/**
 * Searches for a safe serial order of every device's class steps, component by component of the
 * edge graph (components never constrain each other). Answers the order, or undefined.
 */
const safeOrder = (
  ids: ReadonlyArray<string>,
  steps: ReadonlyArray<ReadonlyArray<number>>,
  edges: ReadonlyArray<readonly [number, number]>
): Array<string> | undefined => {
  const n = ids.length
  const outgoing: Array<Array<number>> = ids.map(() => [])
  const incoming: Array<Array<number>> = ids.map(() => [])
  const component = ids.map((_, i) => i)
  const root = (i: number): number => {
    let r = i
    while (component[r] !== r) r = component[r] ?? r
    return r
  }
  for (const [a, b] of edges) {
    outgoing[a]?.push(b)
    incoming[b]?.push(a)
    component[root(a)] = root(b)
  }
  const order: Array<string> = []
  for (let c = 0; c < n; c++) {
    const members = ids.map((_, i) => i).filter((i) => root(i) === c)
    if (members.length === 0) continue
    const found = searchComponent(members, steps, outgoing, incoming)
    if (found === undefined) return undefined
    order.push(...found.map((i) => ids[i] ?? ""))
  }
  return order
}

const searchComponent = (
  members: ReadonlyArray<number>,
  steps: ReadonlyArray<ReadonlyArray<number>>,
  outgoing: ReadonlyArray<ReadonlyArray<number>>,
  incoming: ReadonlyArray<ReadonlyArray<number>>
): Array<number> | undefined => {
  const position = new Map<number, number>(members.map((i) => [i, 0]))
  const classesOf = (i: number, moving: number): number => {
    const at = position.get(i) ?? 0
    const s = steps[i] ?? []
    return (s[at] ?? 0) | (i === moving ? (s[at + 1] ?? 0) : 0)
  }
  const safeAround = (d: number, moving: number): boolean => {
    const mine = classesOf(d, moving)
    if ((mine & initiating) !== 0)
      for (const t of outgoing[d] ?? []) if ((classesOf(t, moving) & halted) !== 0) return false
    if ((mine & halted) !== 0)
      for (const a of incoming[d] ?? []) if ((classesOf(a, moving) & initiating) !== 0) return false
    return true
  }
  const key = () => members.map((i) => position.get(i) ?? 0).join(",")
  const done = () => members.every((i) => (position.get(i) ?? 0) === (steps[i]?.length ?? 1) - 1)
  const visited = new Set<string>()
  const trail: Array<number> = []
  const dfs = (): boolean => {
    if (done()) return true
    const k = key()
    if (visited.has(k)) return false
    visited.add(k)
    if (visited.size > searchLimit) throw new Error(`the model's search passed ${searchLimit} group states`)
    for (const d of members) {
      const at = position.get(d) ?? 0
      if (at + 1 >= (steps[d]?.length ?? 1)) continue
      if (!safeAround(d, d)) continue
      position.set(d, at + 1)
      trail.push(d)
      if (dfs()) return true
      trail.pop()
      position.set(d, at)
    }
    return false
  }
  return dfs() ? trail : undefined
}

/** The first edge broken when every device is in the state `at` says. */
const brokenEdge = (edges: ReadonlyArray<ModelEdge>, at: (id: string) => State): ModelEdge | undefined =>
  edges.find(([a, b]) => peerClass[at(a)] === "initiating" && peerClass[at(b)] === "halted")

/**
 * The model's verdict on moving a group of `devices` joined by `edges` from the states `from`
 * (RUNNING where it names none) to `to` (a device `to` leaves out stays where it is).
 */
export const judgeTransition = (
  devices: ReadonlyArray<ModelDevice>,
  edges: ReadonlyArray<ModelEdge>,
  from: Assignment,
  to: Assignment
): Verdict => {
  const paths: Record<string, ReadonlyArray<State>> = {}
  for (const d of devices) {
    const start = stateIn(from, d.id, "RUNNING")
    const end = stateIn(to, d.id, start)
    // A device asked for the state it is in has nothing to do, ERROR included (a quarantined device stays).
    if (start === end) {
      paths[d.id] = [start]
      continue
    }
    const walked = kernelPath(d.flags, start, end)
    if (!walked.ok) return { possible: false, why: { _tag: "KernelRefuses", device: d.id, reason: walked.reason } }
    paths[d.id] = walked.states
  }
  const first = (id: string): State => paths[id]?.[0] ?? "ERROR"
  const last = (id: string): State => paths[id]?.at(-1) ?? "ERROR"
  const before = brokenEdge(edges, first)
  if (before !== undefined) return { possible: false, why: { _tag: "UnsafeStart", edge: before } }
  const after = brokenEdge(edges, last)
  if (after !== undefined) return { possible: false, why: { _tag: "UnsafeEnd", edge: after } }
  const ids = devices.map((d) => d.id)
  const index = new Map(ids.map((id, i) => [id, i] as const))
  const order = safeOrder(
    ids,
    ids.map((id) => classSteps(paths[id] ?? [])),
    edges.map(([a, b]) => [index.get(a) ?? -1, index.get(b) ?? -1] as const)
  )
  if (order === undefined) return { possible: false, why: { _tag: "NoSafeOrder" } }
  return { possible: true, paths, target: Object.fromEntries(ids.map((id) => [id, last(id)])), order }
}
