import { Result } from "effect"
import { arcsFor, supportsState } from "./Arc.js"
import { AllFlagSets, type Flags, hasFlag } from "./Flags.js"
import {
  BlockedTransition,
  ErrorRequested,
  FromError,
  type FsmError,
  MissingStopCopy,
  UnsupportedState
} from "./FsmError.js"
import { isSaving, type State, StateNumber, States } from "./State.js"

/**
 * A combination transition: the states a device passes through, the start state included.
 * A no-op is the start state alone.
 */
export type Path = ReadonlyArray<State>

/**
 * The path rule of the uAPI (`vfio_mig_get_next_state`), stated once:
 * 1. take the shortest path over the device's legal arcs;
 * 2. saving-group states (PRE_COPY, PRE_COPY_P2P, STOP_COPY) share one data session, so a
 *    path never closes and reopens it: its interior states are outside the saving group,
 *    unless the path starts and ends inside the group, in which case it stays inside
 *    (PRE_COPY→PRE_COPY_P2P→STOP_COPY);
 * 3. where no such path exists (STOP_COPY→PRE_COPY, STOP_COPY→PRE_COPY_P2P) the request is
 *    refused, never looped on.
 * Every shortest path under these rules is unique (the tests check it), so no tie-break is needed.
 */
const searchPath = (flags: Flags, from: State, to: State): Path | undefined => {
  if (from === to) return [from]
  const arcs = arcsFor(flags)
  const inside = isSaving(from) && isSaving(to)
  const mayPassThrough = (s: State) => (inside ? isSaving(s) : !isSaving(s))
  const previous = new Map<State, State>([[from, from]])
  let frontier: Array<State> = [from]
  while (frontier.length > 0) {
    const next: Array<State> = []
    for (const s of frontier) {
      if (s !== from && !mayPassThrough(s)) continue
      for (const arc of arcs) {
        if (arc.from !== s || previous.has(arc.to)) continue
        previous.set(arc.to, s)
        if (arc.to === to) {
          const path: Array<State> = [to]
          let at: State = to
          while (at !== from) {
            at = previous.get(at) ?? from
            path.push(at)
          }
          return path.reverse()
        }
        next.push(arc.to)
      }
    }
    frontier = next
  }
  return undefined
}

const decide = (flags: Flags, from: State, to: State): Result.Result<Path, FsmError> => {
  if (!hasFlag(flags, "STOP_COPY")) return Result.fail(new MissingStopCopy({ flags }))
  if (from === "ERROR") return Result.fail(new FromError({ to }))
  if (to === "ERROR") return Result.fail(new ErrorRequested({ from }))
  if (!supportsState(flags, from)) return Result.fail(new UnsupportedState({ state: from, role: "from", flags }))
  if (!supportsState(flags, to)) return Result.fail(new UnsupportedState({ state: to, role: "to", flags }))
  const path = searchPath(flags, from, to)
  return path === undefined ? Result.fail(new BlockedTransition({ from, to })) : Result.succeed(path)
}

/** Every answer, computed once from the arc rules: 8 flag sets × 8 × 8 states. */
const table: ReadonlyArray<Result.Result<Path, FsmError>> = AllFlagSets.flatMap((flags) =>
  States.flatMap((from) => States.map((to) => decide(flags, from, to)))
)

const lookup = (flags: Flags, from: State, to: State): Result.Result<Path, FsmError> =>
  table[(flags & 7) * 64 + StateNumber[from] * 8 + StateNumber[to]] ?? decide(flags, from, to)

/**
 * The combination transition the kernel takes from `from` to `to` for a device with `flags`,
 * or the reason it refuses. O(1): a table lookup.
 */
export const path = (from: State, to: State, flags: Flags): Result.Result<Path, FsmError> => lookup(flags, from, to)

/**
 * The first step of the combination transition from `from` to `to`: the state a driver
 * moves to next. A no-op request answers `to` itself.
 */
export const nextState = (from: State, to: State, flags: Flags): Result.Result<State, FsmError> =>
  Result.map(lookup(flags, from, to), (p) => p[1] ?? to)
