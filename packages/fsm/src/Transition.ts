import { Result } from "effect"
import { FlagBit, type Flags, hasFlag } from "./Flags.js"
import {
  BlockedTransition,
  ErrorRequested,
  FromError,
  FsmError,
  type FsmErrorReason,
  MissingStopCopy,
  UnsupportedState
} from "./FsmError.js"
import { type State, StateNumber, States } from "./State.js"

/**
 * A combination transition: the states a device passes through, the start state included.
 * A no-op is the start state alone.
 */
export type Path = ReadonlyArray<State>

/*
 * The rule, as the kernel writes it (`vfio_mig_get_next_state` in drivers/vfio/vfio_main.c).
 *
 * For a device with every optional feature, TOWARD[from][to] is the state to step to next when
 * the device is in `from` and `to` is requested. Followed repeatedly it gives the shortest path
 * over the 15 arcs of DESIGN.md §1 in which saving-group states (PRE_COPY, PRE_COPY_P2P,
 * STOP_COPY) are never interior, unless the path starts and ends in the group
 * (PRE_COPY → PRE_COPY_P2P → STOP_COPY): the saving session is never closed and reopened.
 * ERROR marks a request the kernel refuses: anything from ERROR, ERROR itself, and
 * STOP_COPY → PRE_COPY / PRE_COPY_P2P (no path keeps the session; some kernels loop there).
 *
 * A device without an optional feature never enters the states that need it: the loop in
 * `step` skips them by asking the table again from the skipped state, so the driver sees one
 * fused arc (RUNNING → STOP without P2P). The test suite derives this table from the arcs and
 * the rule by search and checks every entry.
 */
// biome-ignore format: the table is read as a table
const TOWARD: Record<State, Record<State, State>> = {
  //            to:   ERROR    STOP           RUNNING        STOP_COPY       RESUMING       RUNNING_P2P    PRE_COPY        PRE_COPY_P2P
  ERROR:        row("ERROR", "ERROR",       "ERROR",       "ERROR",        "ERROR",       "ERROR",       "ERROR",        "ERROR"),
  STOP:         row("ERROR", "STOP",        "RUNNING_P2P", "STOP_COPY",    "RESUMING",    "RUNNING_P2P", "RUNNING_P2P",  "RUNNING_P2P"),
  RUNNING:      row("ERROR", "RUNNING_P2P", "RUNNING",     "RUNNING_P2P",  "RUNNING_P2P", "RUNNING_P2P", "PRE_COPY",     "RUNNING_P2P"),
  STOP_COPY:    row("ERROR", "STOP",        "STOP",        "STOP_COPY",    "STOP",        "STOP",        "ERROR",        "ERROR"),
  RESUMING:     row("ERROR", "STOP",        "STOP",        "STOP",         "RESUMING",    "STOP",        "STOP",         "STOP"),
  RUNNING_P2P:  row("ERROR", "STOP",        "RUNNING",     "STOP",         "STOP",        "RUNNING_P2P", "RUNNING",      "PRE_COPY_P2P"),
  PRE_COPY:     row("ERROR", "RUNNING",     "RUNNING",     "PRE_COPY_P2P", "RUNNING",     "RUNNING",     "PRE_COPY",     "PRE_COPY_P2P"),
  PRE_COPY_P2P: row("ERROR", "RUNNING_P2P", "RUNNING_P2P", "STOP_COPY",    "RUNNING_P2P", "RUNNING_P2P", "PRE_COPY",     "PRE_COPY_P2P")
}

function row(...next: [State, State, State, State, State, State, State, State]): Record<State, State> {
  return Object.fromEntries(States.map((to) => [to, next[StateNumber[to]] as State])) as Record<State, State>
}

/** The features a state needs (the kernel's `state_flags_table`); ERROR needs what no device has. */
const NEEDS: Record<State, Flags> = {
  ERROR: ~0,
  STOP: FlagBit.STOP_COPY,
  RUNNING: FlagBit.STOP_COPY,
  STOP_COPY: FlagBit.STOP_COPY,
  RESUMING: FlagBit.STOP_COPY,
  RUNNING_P2P: FlagBit.STOP_COPY | FlagBit.P2P,
  PRE_COPY: FlagBit.STOP_COPY | FlagBit.PRE_COPY,
  PRE_COPY_P2P: FlagBit.STOP_COPY | FlagBit.P2P | FlagBit.PRE_COPY
}

/** Whether a device with `flags` may ever be in state `s` (ERROR is never a supported target). */
export const supportsState = (flags: Flags, s: State): boolean => (NEEDS[s] & flags) === NEEDS[s]

/**
 * The kernel's loop: the next supported state toward `to`, or ERROR when the request is refused.
 * It stops at ERROR: ERROR needs every feature, so a loop that only skips unsupported states
 * would spin there forever (the STOP_COPY → PRE_COPY hang of some kernels).
 */
const step = (flags: Flags, from: State, to: State): State => {
  let next = TOWARD[from][to]
  while (next !== "ERROR" && !supportsState(flags, next)) next = TOWARD[next][to]
  return next
}

const refuse = (reason: FsmErrorReason): Result.Result<Path, FsmError> => Result.fail(new FsmError({ reason }))

const decide = (flags: Flags, from: State, to: State): Result.Result<Path, FsmError> => {
  if (!hasFlag(flags, "STOP_COPY")) return refuse(new MissingStopCopy({ flags }))
  if (from === "ERROR") return refuse(new FromError({ to }))
  if (to === "ERROR") return refuse(new ErrorRequested({ from }))
  if (!supportsState(flags, from)) return refuse(new UnsupportedState({ state: from, role: "from", flags }))
  if (!supportsState(flags, to)) return refuse(new UnsupportedState({ state: to, role: "to", flags }))
  const walked: Array<State> = [from]
  for (let at: State = from; at !== to; ) {
    at = step(flags, at, to)
    if (at === "ERROR") return refuse(new BlockedTransition({ from, to }))
    walked.push(at)
  }
  return Result.succeed(walked)
}

/** Every answer, walked once at load: 8 flag sets × 8 × 8 states. */
const answers: ReadonlyArray<Result.Result<Path, FsmError>> = [0, 1, 2, 3, 4, 5, 6, 7].flatMap((flags) =>
  States.flatMap((from) => States.map((to) => decide(flags, from, to)))
)

const lookup = (flags: Flags, from: State, to: State): Result.Result<Path, FsmError> =>
  answers[(flags & 7) * 64 + StateNumber[from] * 8 + StateNumber[to]] ?? decide(flags, from, to)

/**
 * The combination transition the kernel takes from `from` to `to` for a device with `flags`,
 * or the reason it refuses. O(1): a lookup of answers walked at load.
 */
export const path = (from: State, to: State, flags: Flags): Result.Result<Path, FsmError> => lookup(flags, from, to)

/**
 * The first step of the combination transition from `from` to `to`: the state a driver
 * moves to next. A no-op request answers `to` itself.
 */
export const nextState = (from: State, to: State, flags: Flags): Result.Result<State, FsmError> =>
  Result.map(lookup(flags, from, to), (p) => p[1] ?? to)
