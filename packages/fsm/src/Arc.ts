import { type Flags, hasFlag } from "./Flags.js"
import type { State } from "./State.js"

/** One direct step of the migration state machine: what a single SET_STATE of a driver does. */
export interface Arc {
  readonly from: State
  readonly to: State
}

/**
 * The arcs a driver with all three capabilities implements (15). The reduced sets are not
 * written out: they follow from the rule below.
 */
const fullArcs: ReadonlyArray<readonly [State, State]> = [
  ["RUNNING", "RUNNING_P2P"],
  ["RUNNING", "PRE_COPY"],
  ["RUNNING_P2P", "STOP"],
  ["RUNNING_P2P", "RUNNING"],
  ["RUNNING_P2P", "PRE_COPY_P2P"],
  ["STOP", "RUNNING_P2P"],
  ["STOP", "STOP_COPY"],
  ["STOP", "RESUMING"],
  ["STOP_COPY", "STOP"],
  ["RESUMING", "STOP"],
  ["PRE_COPY", "RUNNING"],
  ["PRE_COPY", "PRE_COPY_P2P"],
  ["PRE_COPY_P2P", "PRE_COPY"],
  ["PRE_COPY_P2P", "RUNNING_P2P"],
  ["PRE_COPY_P2P", "STOP_COPY"]
]

/** The capability a state needs, if any. ERROR needs none but is never an arc's end. */
const stateNeeds = (s: State): Flags =>
  (s === "RUNNING_P2P" || s === "PRE_COPY_P2P" ? 2 : 0) | (s === "PRE_COPY" || s === "PRE_COPY_P2P" ? 4 : 0)

/** Whether a device with `flags` may ever be in state `s`. */
export const supportsState = (flags: Flags, s: State): boolean => (stateNeeds(s) & flags) === stateNeeds(s)

const isP2PState = (s: State): boolean => s === "RUNNING_P2P" || s === "PRE_COPY_P2P"

/**
 * The rule for reduced capability sets: a device without P2P bypasses the P2P states, so the
 * arcs through one fuse into a single arc (RUNNING→RUNNING_P2P→STOP becomes RUNNING→STOP,
 * STOP→RUNNING_P2P→RUNNING becomes STOP→RUNNING, PRE_COPY→PRE_COPY_P2P→STOP_COPY becomes
 * PRE_COPY→STOP_COPY); a device without PRE_COPY loses the PRE_COPY states with their arcs.
 * A device without STOP_COPY is not migratable and has no arcs at all.
 */
const deriveArcs = (flags: Flags): ReadonlyArray<Arc> => {
  if (!hasFlag(flags, "STOP_COPY")) return []
  const out: Array<Arc> = []
  const add = (from: State, to: State) => {
    if (from !== to && !out.some((a) => a.from === from && a.to === to)) out.push({ from, to })
  }
  for (const [from, to] of fullArcs) {
    if (!supportsState(flags, from)) continue
    if (supportsState(flags, to)) add(from, to)
    else if (!hasFlag(flags, "P2P") && isP2PState(to)) {
      for (const [via, next] of fullArcs) {
        if (via === to && supportsState(flags, next)) add(from, next)
      }
    }
  }
  return out
}

const arcTable: ReadonlyArray<ReadonlyArray<Arc>> = [0, 1, 2, 3, 4, 5, 6, 7].map(deriveArcs)

/** The legal direct arcs of a device with `flags`. */
export const arcsFor = (flags: Flags): ReadonlyArray<Arc> => arcTable[flags & 7] ?? []

const arcKey = (from: State, to: State) => `${from}>${to}`
const arcSets: ReadonlyArray<ReadonlySet<string>> = arcTable.map(
  (arcs) => new Set(arcs.map((a) => arcKey(a.from, a.to)))
)

/** Whether `from → to` is a single legal arc for a device with `flags`. */
export const isArc = (flags: Flags, from: State, to: State): boolean =>
  arcSets[flags & 7]?.has(arcKey(from, to)) ?? false
