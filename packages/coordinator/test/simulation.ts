import type { Group, Plan, PlanArc } from "@lockstep/coordinator"
import { type State, stateClass } from "@lockstep/fsm"

/**
 * Brute-force ground truth for plans, independent of `verifyPlan`: run the plan's arcs as the
 * dependencies allow, arcs taking time and overlapping, and check the invariant (for every
 * edge a → b: not a initiating while b halted, an arc in flight counting as both its ends) at
 * every event. Each device's arcs run in plan order, one at a time.
 */

interface Device {
  readonly state: State
  readonly inFlight: PlanArc | undefined
}

const may = (d: Device, cls: "initiating" | "halted"): boolean =>
  stateClass(d.state) === cls ||
  (d.inFlight !== undefined && (stateClass(d.inFlight.from) === cls || stateClass(d.inFlight.to) === cls))

const describe = (a: string, b: string, da: Device, db: Device): string => {
  const at = (d: Device) => (d.inFlight === undefined ? d.state : `${d.inFlight.from}→${d.inFlight.to}`)
  return `${a} (${at(da)}) initiating into ${b} (${at(db)}) halted`
}

const chainsOf = (plan: Plan, group: Group): Map<string, Array<PlanArc>> => {
  const chains = new Map<string, Array<PlanArc>>(group.devices.map((d) => [d.id, []]))
  for (const arc of plan.arcs) chains.get(arc.device)?.push(arc)
  return chains
}

const isDoneWith = (plan: Plan, arcDone: (arc: PlanArc) => boolean) => {
  const arcs = new Map(plan.arcs.map((a) => [a.id, a]))
  const barriers = new Map(plan.barriers.map((b) => [b.id, b]))
  const done = (id: string): boolean => {
    const arc = arcs.get(id)
    if (arc !== undefined) return arcDone(arc)
    return (barriers.get(id)?.after ?? []).every(done)
  }
  return done
}

/**
 * One random execution: at each step, start any arc whose dependencies are done (and whose
 * device is idle) or finish any arc in flight, chosen by `pick`. Returns the first invariant
 * violation, "deadlock" if arcs remain that can never start, or undefined.
 */
export const simulate = (
  plan: Plan,
  group: Group,
  initial: Readonly<Record<string, State>>,
  pick: (choices: number) => number
): string | undefined => {
  const chains = chainsOf(plan, group)
  const next = new Map(group.devices.map((d) => [d.id, 0]))
  const devices = new Map<string, Device>(
    group.devices.map((d) => [d.id, { state: initial[d.id] ?? "RUNNING", inFlight: undefined }])
  )
  const finished = new Set<string>()
  const done = isDoneWith(plan, (arc) => finished.has(arc.id))
  const check = (a: string, b: string): string | undefined => {
    const da = devices.get(a)
    const db = devices.get(b)
    if (da === undefined || db === undefined) return `unknown edge ${a} → ${b}`
    return may(da, "initiating") && may(db, "halted") ? describe(a, b, da, db) : undefined
  }
  for (const [a, b] of group.topology.edges()) {
    const bad = check(a, b)
    if (bad !== undefined) return `at the start: ${bad}`
  }
  for (;;) {
    const choices: Array<() => string> = []
    for (const [id, device] of devices) {
      if (device.inFlight !== undefined) {
        const arc = device.inFlight
        choices.push(() => {
          devices.set(id, { state: arc.to, inFlight: undefined })
          finished.add(arc.id)
          return id
        })
        continue
      }
      const arc = chains.get(id)?.[next.get(id) ?? 0]
      if (arc === undefined || !arc.after.every(done)) continue
      choices.push(() => {
        devices.set(id, { state: device.state, inFlight: arc })
        next.set(id, (next.get(id) ?? 0) + 1)
        return id
      })
    }
    if (choices.length === 0) break
    const moved = choices[pick(choices.length)]?.() ?? ""
    for (const t of group.topology.targetsOf(moved)) {
      const bad = check(moved, t)
      if (bad !== undefined) return bad
    }
    for (const i of group.topology.initiatorsOf(moved)) {
      const bad = check(i, moved)
      if (bad !== undefined) return bad
    }
  }
  return finished.size === plan.arcs.length ? undefined : "deadlock"
}

/** A small deterministic PRNG (mulberry32) for `simulate`'s choices. */
export const chooser = (seed: number) => {
  let s = seed >>> 0
  return (choices: number): number => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (((t ^ (t >>> 14)) >>> 0) % choices) | 0
  }
}

/**
 * Every execution at once, for small plans: explores every reachable combination of device
 * positions (resting after k arcs, or arc k in flight) and returns the first state that breaks
 * the invariant, or undefined when none does.
 */
export const explore = (plan: Plan, group: Group, initial: Readonly<Record<string, State>>): string | undefined => {
  const ids = group.devices.map((d) => d.id)
  const chains = ids.map((id) => chainsOf(plan, group).get(id) ?? [])
  const index = new Map(ids.map((id, i) => [id, i]))
  const edges = [...group.topology.edges()].map(([a, b]) => [index.get(a) ?? -1, index.get(b) ?? -1] as const)
  const deviceAt = (i: number, pos: number): Device => {
    const chain = chains[i] ?? []
    const resting = pos % 2 === 0
    const k = Math.floor(pos / 2)
    if (resting)
      return {
        state: k === 0 ? (initial[ids[i] ?? ""] ?? "RUNNING") : (chain[k - 1]?.to ?? "ERROR"),
        inFlight: undefined
      }
    const arc = chain[k]
    return { state: arc?.from ?? "ERROR", inFlight: arc }
  }
  const seen = new Set<string>()
  const queue: Array<Array<number>> = [ids.map(() => 0)]
  seen.add(queue[0]?.join(",") ?? "")
  while (queue.length > 0) {
    const positions = queue.pop() ?? []
    const devices = positions.map((pos, i) => deviceAt(i, pos))
    for (const [a, b] of edges) {
      const da = devices[a]
      const db = devices[b]
      if (da !== undefined && db !== undefined && may(da, "initiating") && may(db, "halted"))
        return describe(ids[a] ?? "", ids[b] ?? "", da, db)
    }
    const done = isDoneWith(plan, (arc) => {
      const i = index.get(arc.device) ?? -1
      return (positions[i] ?? 0) >= 2 * ((chains[i] ?? []).indexOf(arc) + 1)
    })
    positions.forEach((pos, i) => {
      const chain = chains[i] ?? []
      const arc = chain[Math.floor(pos / 2)]
      const movable = pos % 2 === 1 || arc?.after.every(done) === true
      if (!movable || pos >= 2 * chain.length) return
      const nextPositions = positions.map((p, j) => (j === i ? p + 1 : p))
      const key = nextPositions.join(",")
      if (!seen.has(key)) {
        seen.add(key)
        queue.push(nextPositions)
      }
    })
  }
  return undefined
}
