import {
  type Flags,
  type FsmError,
  hasFlag,
  type Path,
  path,
  type State,
  type StateClass,
  stateClass
} from "@lockstep/fsm"
import type { Barrier, BarrierKind, Edge, Group, Plan, PlanArc } from "@lockstep/group"
import { Data, Result } from "effect"
import { orderNodes } from "./DependencyGraph.js"

/**
 * States for a group: one state for every device, or a state per device id. Where a record
 * leaves a device out, the default applies: RUNNING for a start state, "stays where it is"
 * for a target.
 */
export type StateAssignment = State | Readonly<Record<string, State>>

/** A state assignment names a device that is not in the group. */
export class UnknownDevice extends Data.TaggedError("UnknownDevice")<{
  readonly device: string
  readonly role: "from" | "to"
}> {
  override get message(): string {
    return `the ${this.role === "from" ? "current" : "target"} states name ${JSON.stringify(this.device)}, which is not in the group`
  }
}

/** The kernel refuses one device's transition; `cause` says why. */
export class PathRefused extends Data.TaggedError("PathRefused")<{
  readonly device: string
  readonly from: State
  readonly to: State
  readonly cause: FsmError
}> {
  override get message(): string {
    return `${this.device}: cannot go ${this.from} → ${this.to}: ${this.cause.message}`
  }
}

/**
 * An edge breaks the invariant before the plan starts or after it ends, so no ordering can
 * make the transition safe: the initiator is initiating while the target is halted.
 */
export class UnsafeEdge extends Data.TaggedError("UnsafeEdge")<{
  readonly edge: Edge
  readonly moment: "before" | "after"
  readonly initiatorState: State
  readonly targetState: State
  /** Whether the initiator has no arc in this plan. */
  readonly initiatorStays: boolean
}> {
  override get message(): string {
    const [a, b] = this.edge
    return this.moment === "before"
      ? `edge ${a} → ${b} is already unsafe: ${a} is ${this.initiatorState} (initiating) and may write into ${b}, which is ${this.targetState} (halted)`
      : `edge ${a} → ${b}: ${a} ${this.initiatorStays ? "stays" : "would end"} in ${this.initiatorState} (initiating) and could write into ${b} in ${this.targetState} (halted); ${a} must be quiesced or halted first`
  }
}

/** One arc in a dependency cycle. */
export interface CycleArc {
  readonly device: string
  readonly from: State
  readonly to: State
}

/**
 * The ordering the invariant demands is circular: each arc in `cycle` must wait for the next,
 * and the last for the first. This happens when devices without P2P write into each other
 * (each must stop writing before the other halts, and stopping is one RUNNING → STOP arc).
 */
export class DependencyCycle extends Data.TaggedError("DependencyCycle")<{
  readonly cycle: ReadonlyArray<CycleArc>
}> {
  override get message(): string {
    const steps = this.cycle.map((a) => `${a.device} ${a.from} → ${a.to}`)
    const first = steps[0] ?? ""
    return `no safe order exists: ${[...steps, first].join(" waits for ")}; devices that write into each other need P2P (a quiescent state) to stop one after the other`
  }
}

/** Every way planning a group transition can fail. */
export type PlanError = UnknownDevice | PathRefused | UnsafeEdge | DependencyCycle

/** A window of time in which a device may be in a class: it opens before the plan or with an arc's start, and closes with an arc's end or after the plan. */
interface Window {
  readonly opens: number | "before"
  readonly closes: number | "after"
}

interface DeviceRoute {
  readonly id: string
  readonly path: Path
  /** Node index of the device's first arc. */
  readonly first: number
  readonly initiating: Window | undefined
  readonly halted: Window | undefined
  /** Reset and starting in RUNNING: bus mastering is off, so it initiates nothing until an arc into an initiating state (see `busMasteringOff`). */
  readonly quiet: boolean
}

/**
 * The window of `cls` in a path. Every kernel path is monotone in class (it never leaves a
 * class and comes back; the tests check all 112 legal paths), so a device has at most one
 * initiating and one halted window, and each touches an end of its path: it is open before the
 * plan and closes with the arc that leaves the class, or opens with the arc that enters the
 * class and stays open after the plan. An arc in flight counts as both its ends, hence "the arc
 * that leaves closes" at its end and "the arc that enters opens" at its start.
 */
const windowOf = (states: Path, cls: StateClass, first: number, quietStart = false): Window | undefined => {
  const classAt = (j: number) => (j === 0 && quietStart ? "quiesced" : stateClass(states[j] ?? "ERROR"))
  if (classAt(0) === cls) {
    for (let j = 1; j < states.length; j++) if (classAt(j) !== cls) return { opens: "before", closes: first + j - 1 }
    return { opens: "before", closes: "after" }
  }
  for (let j = 1; j < states.length; j++) if (classAt(j) === cls) return { opens: first + j - 1, closes: "after" }
  return undefined
}

/** A node of the graph under construction; `after` holds node indices and only grows. */
type Node =
  | {
      readonly _tag: "Arc"
      readonly device: number
      readonly from: State
      readonly to: State
      readonly after: Array<number>
    }
  | {
      readonly _tag: "Barrier"
      readonly kind: BarrierKind
      readonly domain: number
      /** Device position left out of the join, or -1. */
      readonly except: number
      readonly after: Array<number>
    }

const cycleArc = (node: Node | undefined, routes: ReadonlyArray<DeviceRoute>): Array<CycleArc> =>
  node?._tag === "Arc" ? [{ device: routes[node.device]?.id ?? "", from: node.from, to: node.to }] : []

const stateAt = (assignment: StateAssignment | undefined, id: string, fallback: State): State => {
  if (assignment === undefined) return fallback
  if (typeof assignment === "string") return assignment
  return Object.hasOwn(assignment, id) ? (assignment[id] ?? fallback) : fallback
}

const unknownIn = (group: Group, assignment: StateAssignment | undefined): string | undefined =>
  assignment === undefined || typeof assignment === "string"
    ? undefined
    : Object.keys(assignment).find((id) => !group.topology.position.has(id))

/**
 * Plans a group transition.
 *
 * Each device follows its own kernel path (`path(from, to, flags)`); the path's arcs become
 * nodes of a dependency graph, each device's arcs in sequence. The invariant (for every edge
 * a → b, never a initiating while b is halted, an arc in flight counting as both its ends)
 * then adds exactly these dependencies, per edge:
 * - an arc that brings b into the halted states waits for the arc that takes a out of the
 *   initiating states (on the way down: quiesce every initiator, then stop anyone);
 * - an arc that brings a into the initiating states waits for the arc that takes b out of the
 *   halted states (on the way up: everyone back to quiesced before anyone runs).
 * A device without edges waits for nothing but its own previous arc. In a P2P domain (a clique)
 * the N×N waits go through one barrier per direction, so a domain costs O(N).
 *
 * Devices that do not move still count: an edge whose initiator is initiating while its target
 * is halted before the plan, or after it (say a RUNNING device that stays while its target
 * stops), fails with `UnsafeEdge`; circular waits (devices without P2P writing into each other)
 * fail with `DependencyCycle`.
 *
 * `from` defaults to RUNNING for every device; devices a `to` record leaves out stay where they
 * are (a quarantined device in ERROR, for instance).
 *
 * The planner orders whatever can be ordered: a device without P2P that writes into others is
 * stopped before its targets halt. `Migratability.check` applies the stricter rule of the
 * design (every initiator needs P2P) and is what a migration should consult first.
 */
export const planTransition = (
  group: Group,
  request: {
    readonly from?: StateAssignment
    readonly to: StateAssignment
    /**
     * Rollback mode: accept edges that are already unsafe before the plan (a device that failed
     * into ERROR while its targets were halted). Nothing can order an exposure that already
     * exists; the plan still orders every arc it adds, and the targets get out of the halted
     * states without waiting for the initiator.
     */
    readonly allowUnsafeStart?: boolean
    /**
     * Rollback mode: devices the rollback has just reset. A reset turns a device's bus mastering
     * off until an arc takes it into an initiating state, so while it is RUNNING, or on its way
     * down from RUNNING, it initiates nothing: it counts as quiesced, and its targets may go back
     * to halted states around it.
     */
    readonly busMasteringOff?: ReadonlyArray<string>
  }
): Result.Result<Plan, PlanError> => {
  const unsafeStartAllowed = request.allowUnsafeStart === true
  const unknownFrom = unknownIn(group, request.from)
  if (unknownFrom !== undefined) return Result.fail(new UnknownDevice({ device: unknownFrom, role: "from" }))
  const unknownTo = unknownIn(group, request.to)
  if (unknownTo !== undefined) return Result.fail(new UnknownDevice({ device: unknownTo, role: "to" }))

  const nodes: Array<Node> = []
  const routesResult = Result.all(
    group.devices.map((device, index): Result.Result<DeviceRoute, PlanError> => {
      const from = stateAt(request.from, device.id, "RUNNING")
      const to = stateAt(request.to, device.id, from)
      // A device that stays where it is has no path to ask for; the kernel would refuse even a
      // no-op out of ERROR, which is exactly how a quarantined device is left.
      const walked: Result.Result<Path, FsmError> = from === to ? Result.succeed([from]) : path(from, to, device.flags)
      if (Result.isFailure(walked))
        return Result.fail(new PathRefused({ device: device.id, from, to, cause: walked.failure }))
      const states = walked.success
      const first = nodes.length
      for (let j = 1; j < states.length; j++) {
        nodes.push({
          _tag: "Arc",
          device: index,
          from: states[j - 1] ?? from,
          to: states[j] ?? to,
          after: j === 1 ? [] : [nodes.length - 1]
        })
      }
      const quiet = states[0] === "RUNNING" && request.busMasteringOff?.includes(device.id) === true
      return Result.succeed({
        id: device.id,
        path: states,
        first,
        initiating: windowOf(states, "initiating", first, quiet),
        halted: windowOf(states, "halted", first),
        quiet
      })
    })
  )
  if (Result.isFailure(routesResult)) return Result.fail(routesResult.failure)
  const routes = routesResult.success
  const topology = group.topology

  const route = (p: number): DeviceRoute => {
    const r = routes[p]
    if (r === undefined) throw new RangeError(`Planner: no device at position ${p}`)
    return r
  }
  const initialClass = (r: DeviceRoute) => (r.quiet ? "quiesced" : stateClass(r.path[0] ?? "ERROR"))
  const finalClass = (r: DeviceRoute) =>
    r.quiet && r.path.length === 1 ? "quiesced" : stateClass(r.path.at(-1) ?? "ERROR")
  const unsafe = (a: DeviceRoute, b: DeviceRoute, moment: "before" | "after"): UnsafeEdge => {
    const end = moment === "before" ? 0 : -1
    return new UnsafeEdge({
      edge: [a.id, b.id],
      moment,
      initiatorState: a.path.at(end) ?? "ERROR",
      targetState: b.path.at(end) ?? "ERROR",
      initiatorStays: a.path.length === 1
    })
  }

  // Explicit edges, one dependency each at most.
  for (let p = 0; p < routes.length; p++) {
    const a = route(p)
    for (const q of topology.explicitTargets[p] ?? []) {
      const b = route(q)
      if (initialClass(a) === "initiating" && initialClass(b) === "halted" && !unsafeStartAllowed)
        return Result.fail(unsafe(a, b, "before"))
      if (finalClass(a) === "initiating" && finalClass(b) === "halted") return Result.fail(unsafe(a, b, "after"))
      const w = a.initiating
      const v = b.halted
      if (w === undefined || v === undefined) continue
      if (typeof w.closes === "number" && typeof v.opens === "number") nodes[v.opens]?.after.push(w.closes)
      if (typeof v.closes === "number" && typeof w.opens === "number") nodes[w.opens]?.after.push(v.closes)
    }
  }

  // P2P domains: the same rules, every member against every other, through barriers.
  interface Bound {
    readonly device: number
    readonly node: number
  }
  const join = (after: Array<number>, kind: BarrierKind, domain: number, except: number): number | undefined => {
    if (after.length <= 1) return after[0]
    nodes.push({ _tag: "Barrier", kind, domain, except, after })
    return nodes.length - 1
  }
  const connect = (
    sources: ReadonlyArray<Bound>,
    sinks: ReadonlyArray<Bound>,
    kind: BarrierKind,
    domain: number
  ): DependencyCycle | undefined => {
    if (sources.length === 0 || sinks.length === 0) return undefined
    // A device whose one arc both leaves the source class and enters the sink class (no P2P:
    // RUNNING → STOP) cannot wait for a join that includes itself.
    const sourceNodes = new Set(sources.map((s) => s.node))
    const selfish = sinks.filter((s) => sourceNodes.has(s.node))
    const [one, two] = selfish
    if (one !== undefined && two !== undefined)
      return new DependencyCycle({
        cycle: [...cycleArc(nodes[one.node], routes), ...cycleArc(nodes[two.node], routes)]
      })
    if (sources.length * sinks.length <= sources.length + sinks.length) {
      for (const sink of sinks) {
        for (const source of sources) if (source.device !== sink.device) nodes[sink.node]?.after.push(source.node)
      }
      return undefined
    }
    const others = join(
      sources.filter((s) => s.node !== one?.node).map((s) => s.node),
      kind,
      domain,
      one?.device ?? -1
    )
    const all =
      one === undefined ? others : join(others === undefined ? [one.node] : [others, one.node], kind, domain, -1)
    for (const sink of sinks) {
      const wait = sink.node === one?.node ? others : all
      if (wait !== undefined) nodes[sink.node]?.after.push(wait)
    }
    return undefined
  }

  for (let d = 0; d < topology.domainMembers.length; d++) {
    const members = (topology.domainMembers[d] ?? []).map(route)
    const initiatingBefore = members.find((r) => initialClass(r) === "initiating")
    const haltedBefore = members.find((r) => initialClass(r) === "halted")
    if (initiatingBefore !== undefined && haltedBefore !== undefined && !unsafeStartAllowed)
      return Result.fail(unsafe(initiatingBefore, haltedBefore, "before"))
    const initiatingAfter = members.find((r) => finalClass(r) === "initiating")
    const haltedAfter = members.find((r) => finalClass(r) === "halted")
    if (initiatingAfter !== undefined && haltedAfter !== undefined)
      return Result.fail(unsafe(initiatingAfter, haltedAfter, "after"))

    const positions = topology.domainMembers[d] ?? []
    const bounds = (pick: (r: DeviceRoute) => number | "before" | "after" | undefined): Array<Bound> =>
      positions.flatMap((p) => {
        const node = pick(route(p))
        return typeof node === "number" ? [{ device: p, node }] : []
      })
    const down = connect(
      bounds((r) => (r.initiating?.opens === "before" ? r.initiating.closes : undefined)),
      bounds((r) => (r.halted?.closes === "after" ? r.halted.opens : undefined)),
      "InitiatorsQuiesced",
      d
    )
    if (down !== undefined) return Result.fail(down)
    const up = connect(
      bounds((r) => (r.halted?.opens === "before" ? r.halted.closes : undefined)),
      bounds((r) => (r.initiating?.closes === "after" ? r.initiating.opens : undefined)),
      "TargetsUnhalted",
      d
    )
    if (up !== undefined) return Result.fail(up)
  }

  return finish(group, nodes, routes)
}

/** Orders the graph (Kahn), refuses cycles, assigns levels and ids, and builds the plan value. */
const finish = (
  group: Group,
  nodes: ReadonlyArray<Node>,
  routes: ReadonlyArray<DeviceRoute>
): Result.Result<Plan, DependencyCycle> => {
  const n = nodes.length
  const { order, blocked } = orderNodes(nodes.map((node) => node.after))
  if (order.length < n) return Result.fail(findCycle(nodes, blocked, routes))

  const level = new Int32Array(n)
  for (const i of order) {
    const node = nodes[i]
    if (node === undefined) continue
    let deepest = 0
    for (const p of node.after) deepest = Math.max(deepest, level[p] ?? 0)
    level[i] = node._tag === "Arc" ? deepest + 1 : deepest
  }

  const arcNodes: Array<number> = []
  const barrierNodes: Array<number> = []
  for (let i = 0; i < n; i++) (nodes[i]?._tag === "Arc" ? arcNodes : barrierNodes).push(i)
  // Within a level, group order then path order: node indices already follow both.
  const byLevel = (x: number, y: number) => (level[x] ?? 0) - (level[y] ?? 0) || x - y
  arcNodes.sort(byLevel)
  barrierNodes.sort(byLevel)
  const ids: Array<string> = new Array(n)
  arcNodes.forEach((i, k) => {
    ids[i] = `a${k + 1}`
  })
  barrierNodes.forEach((i, k) => {
    ids[i] = `b${k + 1}`
  })
  const rank = new Int32Array(n)
  arcNodes.forEach((i, k) => {
    rank[i] = k
  })
  barrierNodes.forEach((i, k) => {
    rank[i] = arcNodes.length + k
  })
  const afterIds = (node: Node): ReadonlyArray<string> => {
    const after = node.after
    // Most nodes wait for one node or none: no set, no sort (it adds up over 100 000 devices).
    const only = after[0]
    if (after.length <= 1) return only === undefined ? [] : [ids[only] ?? ""]
    return [...new Set(after)].sort((x, y) => (rank[x] ?? 0) - (rank[y] ?? 0)).map((p) => ids[p] ?? "")
  }
  const deviceId = (p: number) => routes[p]?.id ?? ""

  const arcs = arcNodes.flatMap((i): Array<PlanArc> => {
    const node = nodes[i]
    if (node?._tag !== "Arc") return []
    const { device, from, to } = node
    return [
      { _tag: "Arc", id: ids[i] ?? "", device: deviceId(device), from, to, after: afterIds(node), level: level[i] ?? 0 }
    ]
  })
  const barriers = barrierNodes.flatMap((i): Array<Barrier> => {
    const node = nodes[i]
    if (node?._tag !== "Barrier") return []
    const { kind, domain, except } = node
    return [
      {
        _tag: "Barrier",
        id: ids[i] ?? "",
        kind,
        domain: group.topology.domains[domain]?.members ?? [],
        except: except < 0 ? undefined : deviceId(except),
        after: afterIds(node),
        level: level[i] ?? 0
      }
    ]
  })
  return Result.succeed({
    arcs,
    barriers,
    initial: Object.fromEntries(routes.map((r) => [r.id, r.path[0] ?? "ERROR"])),
    target: Object.fromEntries(routes.map((r) => [r.id, r.path.at(-1) ?? "ERROR"]))
  })
}

/** A cycle among the nodes Kahn's algorithm could not order, reported by its arcs. */
const findCycle = (
  nodes: ReadonlyArray<Node>,
  blocked: Int32Array,
  routes: ReadonlyArray<DeviceRoute>
): DependencyCycle => {
  // Every unordered node waits for at least one unordered node; walking back along such waits
  // must revisit a node, which closes a cycle.
  let at = blocked.findIndex((w) => w > 0)
  const seen = new Map<number, number>()
  const walk: Array<number> = []
  while (at >= 0 && !seen.has(at)) {
    seen.set(at, walk.length)
    walk.push(at)
    at = nodes[at]?.after.find((p) => (blocked[p] ?? 0) > 0) ?? -1
  }
  const cycle = walk.slice(seen.get(at) ?? 0).reverse()
  return new DependencyCycle({
    cycle: cycle.flatMap((i) => cycleArc(nodes[i], routes))
  })
}

/** The target a named step gives each device, from its current state and flags. */
type Step = (current: State, flags: Flags) => State

const stepPlan =
  (step: Step, defaultFrom: State) =>
  (group: Group, from: StateAssignment = defaultFrom): Result.Result<Plan, PlanError> => {
    const unknown = unknownIn(group, from)
    if (unknown !== undefined) return Result.fail(new UnknownDevice({ device: unknown, role: "from" }))
    const to = Object.fromEntries(
      group.devices.map((d) => [d.id, step(stateAt(from, d.id, defaultFrom), d.flags)] as const)
    )
    return planTransition(group, { from, to })
  }

/** The P2P quiescent state of each initiating state. */
const quiescentOf: Partial<Record<State, State>> = { RUNNING: "RUNNING_P2P", PRE_COPY: "PRE_COPY_P2P" }

/**
 * Quiesce: every initiating device that supports P2P enters its P2P quiescent state (RUNNING →
 * RUNNING_P2P, PRE_COPY → PRE_COPY_P2P); everything else stays, devices without P2P included
 * (for them the quiescent state does not exist). From RUNNING by default.
 */
export const quiescePlan = stepPlan((s, flags) => (hasFlag(flags, "P2P") ? (quiescentOf[s] ?? s) : s), "RUNNING")

/** Stop: every device to STOP, initiators quiesced before anyone halts. From RUNNING by default. */
export const stopPlan = stepPlan(() => "STOP", "RUNNING")

/**
 * Begin pre-copy: devices that support PRE_COPY enter it (opening their saving session);
 * the others go to, or stay, RUNNING. From RUNNING by default.
 */
export const beginPrecopyPlan = stepPlan((_, flags) => (hasFlag(flags, "PRE_COPY") ? "PRE_COPY" : "RUNNING"), "RUNNING")

/**
 * Enter stop-copy (the switchover): every device to STOP_COPY, through the quiescent states,
 * every initiator quiesced before any target halts. From RUNNING by default; pass the current
 * states after `beginPrecopy` (PRE_COPY where supported).
 */
export const enterStopCopyPlan = stepPlan(() => "STOP_COPY", "RUNNING")

/** Prepare resume (destination): every device to RESUMING, ready to take a saved stream. From RUNNING by default. */
export const prepareResumePlan = stepPlan(() => "RESUMING", "RUNNING")

/**
 * Resume (destination, after the stream is written): every device RESUMING → STOP (which
 * validates the data) → quiesced → RUNNING, no device running again until all its targets
 * are out of the halted states. From RESUMING by default.
 */
export const resumePlan = stepPlan(() => "RUNNING", "RESUMING")
