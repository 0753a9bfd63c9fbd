import { Result } from "effect"
import type { Flags } from "./Flags.js"
import { type State, States } from "./State.js"
import { nextState, supportsState } from "./Transition.js"

/** One direct step of the migration state machine: what a single SET_STATE of a driver does. */
export interface Arc {
  readonly from: State
  readonly to: State
}

/**
 * The arcs a driver with `flags` must implement: every first step of every transition it can
 * be asked for (the kernel's table followed from each supported state). With all three
 * features these are the 15 arcs of DESIGN.md §1; without P2P the arcs through the P2P states
 * fuse (RUNNING → STOP); a device without STOP_COPY is not migratable and has none.
 */
const deriveArcs = (flags: Flags): ReadonlyArray<Arc> => {
  const out: Array<Arc> = []
  for (const from of States) {
    for (const to of States) {
      const next = nextState(from, to, flags)
      if (Result.isFailure(next) || next.success === from) continue
      const arcTo = next.success
      if (!out.some((a) => a.from === from && a.to === arcTo)) out.push({ from, to: arcTo })
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

export { supportsState }
