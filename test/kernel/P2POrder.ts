/**
 * The P2P ordering rule of DESIGN.md section 2, checked over the arcs the kernel logged, and
 * written from that text alone (it imports nothing of the planner, executor or topology):
 *
 *   for every edge initiator → target, at every instant:
 *   never (target halted and initiator initiating)
 *
 * with initiating = RUNNING, PRE_COPY, ERROR; quiesced = RUNNING_P2P, PRE_COPY_P2P;
 * halted = STOP, STOP_COPY, RESUMING. An arc in flight counts as being in both of its ends.
 *
 * The kernel log orders arcs but does not time them. The arcs of one group come from one
 * process issuing one ioctl at a time, and mtty logs an arc as it starts it: so an arc is in
 * flight from its line until the group's next line, and done by then. Counting it in both ends
 * for that whole span can only make the check stricter than the rule.
 */
import type { LoggedArc, StateName } from "./KernelLog.ts"

type StateClass = "initiating" | "quiesced" | "halted"

const classOf: Readonly<Record<StateName, StateClass>> = {
  ERROR: "initiating",
  RUNNING: "initiating",
  PRE_COPY: "initiating",
  RUNNING_P2P: "quiesced",
  PRE_COPY_P2P: "quiesced",
  STOP: "halted",
  STOP_COPY: "halted",
  RESUMING: "halted"
}

/** One breach: the edge, and the log position at which it held. */
export interface Breach {
  readonly initiator: string
  readonly target: string
  readonly at: number
  readonly initiatorStates: ReadonlyArray<StateName>
  readonly targetStates: ReadonlyArray<StateName>
}

/**
 * Replays one group's `arcs` from `start` (each device's state before the first arc) and
 * answers every instant at which an edge broke the rule.
 */
export const p2pBreaches = (
  start: Readonly<Record<string, StateName>>,
  edges: ReadonlyArray<readonly [string, string]>,
  arcs: ReadonlyArray<LoggedArc>
): ReadonlyArray<Breach> => {
  const done = new Map<string, StateName>(Object.entries(start))
  const statesOf = (device: string, inFlight: LoggedArc | undefined): ReadonlyArray<StateName> => {
    if (inFlight !== undefined && inFlight.device === device) return [inFlight.from, inFlight.to]
    const s = done.get(device)
    return s === undefined ? [] : [s]
  }
  const breaches: Array<Breach> = []
  const check = (at: number, inFlight: LoggedArc | undefined) => {
    for (const [initiator, target] of edges) {
      const i = statesOf(initiator, inFlight)
      const t = statesOf(target, inFlight)
      if (i.some((s) => classOf[s] === "initiating") && t.some((s) => classOf[s] === "halted"))
        breaches.push({ initiator, target, at, initiatorStates: i, targetStates: t })
    }
  }
  check(-1, undefined)
  arcs.forEach((arc, at) => {
    check(at, arc)
    done.set(arc.device, arc.to)
  })
  return breaches
}
