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
import {
  type Barrier,
  type BarrierKind,
  deviceEntry,
  deviceRecord,
  type Group,
  type Plan,
  type PlanArc
} from "@lockstep/group"
import { Result } from "effect"
import { findWaitCycle, orderNodes } from "./DependencyGraph.js"
import {
  type CycleArc,
  DependencyCycle,
  DeviceNotInGroup,
  PathRefused,
  PlanError,
  type PlanErrorReason,
  UnsafeEdge
} from "./PlanError.js"

/**
 * States for a group: one state for every device, or a state per device id. Where a record
 * leaves a device out, the default applies: RUNNING for a start state, "stays where it is"
 * for a target.
 */
export type StateAssignment = State | Readonly<Record<string, State>>

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
  return deviceEntry(assignment, id) ?? fallback
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
export const planTransition = (group: Group, request: PlanRequest): Result.Result<Plan, PlanError> =>
  Result.mapError(planWith(group, request), (reason) => new PlanError({ reason }))

/** What `planTransition` is asked: where the devices are and where they go, and the rollback modes. */
export interface PlanRequest {
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

/** The graph under construction: its nodes so far, each device's route, the group's topology. */
interface Draft {
  readonly nodes: Array<Node>
  readonly routes: ReadonlyArray<DeviceRoute>
  readonly topology: Group["topology"]
  readonly unsafeStartAllowed: boolean
}

const planWith = (group: Group, request: PlanRequest): Result.Result<Plan, PlanErrorReason> => {
  const unknownFrom = unknownIn(group, request.from)
  if (unknownFrom !== undefined) return Result.fail(new DeviceNotInGroup({ device: unknownFrom, role: "from" }))
  const unknownTo = unknownIn(group, request.to)
  if (unknownTo !== undefined) return Result.fail(new DeviceNotInGroup({ device: unknownTo, role: "to" }))
  const nodes: Array<Node> = []
  const routes = routesOf(group, request, nodes)
  if (Result.isFailure(routes)) return Result.fail(routes.failure)
  const draft: Draft = {
    nodes,
    routes: routes.success,
    topology: group.topology,
    unsafeStartAllowed: request.allowUnsafeStart === true
  }
  const refused = orderExplicitEdges(draft) ?? orderDomains(draft)
  return refused === undefined ? finish(group, nodes, draft.routes) : Result.fail(refused)
}

/** Each device's kernel path, its arcs appended to `nodes` in sequence, and its class windows. */
const routesOf = (
  group: Group,
  request: PlanRequest,
  nodes: Array<Node>
): Result.Result<ReadonlyArray<DeviceRoute>, PathRefused> =>
  Result.all(
    group.devices.map((device, index): Result.Result<DeviceRoute, PathRefused> => {
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

const routeAt = (draft: Draft, p: number): DeviceRoute => {
  const r = draft.routes[p]
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

/** Explicit edges, one dependency each at most; an edge unsafe before or after the plan refuses it. */
const orderExplicitEdges = (draft: Draft): UnsafeEdge | undefined => {
  const { nodes, routes, topology } = draft
  for (let p = 0; p < routes.length; p++) {
    const a = routeAt(draft, p)
    for (const q of topology.explicitTargets[p] ?? []) {
      const b = routeAt(draft, q)
      if (initialClass(a) === "initiating" && initialClass(b) === "halted" && !draft.unsafeStartAllowed)
        return unsafe(a, b, "before")
      if (finalClass(a) === "initiating" && finalClass(b) === "halted") return unsafe(a, b, "after")
      const w = a.initiating
      const v = b.halted
      if (w === undefined || v === undefined) continue
      if (typeof w.closes === "number" && typeof v.opens === "number") nodes[v.opens]?.after.push(w.closes)
      if (typeof v.closes === "number" && typeof w.opens === "number") nodes[w.opens]?.after.push(v.closes)
    }
  }
  return undefined
}

/** An arc node of one device: where a class window opens or closes. */
interface Bound {
  readonly device: number
  readonly node: number
}

const join = (
  nodes: Array<Node>,
  after: Array<number>,
  kind: BarrierKind,
  domain: number,
  except: number
): number | undefined => {
  if (after.length <= 1) return after[0]
  nodes.push({ _tag: "Barrier", kind, domain, except, after })
  return nodes.length - 1
}

/** Every sink waits for every source of another device: directly when that is cheaper, else through barriers. */
const connect = (
  draft: Draft,
  sources: ReadonlyArray<Bound>,
  sinks: ReadonlyArray<Bound>,
  kind: BarrierKind,
  domain: number
): DependencyCycle | undefined => {
  const { nodes, routes } = draft
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
    nodes,
    sources.filter((s) => s.node !== one?.node).map((s) => s.node),
    kind,
    domain,
    one?.device ?? -1
  )
  const all =
    one === undefined ? others : join(nodes, others === undefined ? [one.node] : [others, one.node], kind, domain, -1)
  for (const sink of sinks) {
    const wait = sink.node === one?.node ? others : all
    if (wait !== undefined) nodes[sink.node]?.after.push(wait)
  }
  return undefined
}

/** P2P domains: the rules of explicit edges, every member against every other, through barriers. */
const orderDomains = (draft: Draft): UnsafeEdge | DependencyCycle | undefined => {
  const { topology } = draft
  for (let d = 0; d < topology.domainMembers.length; d++) {
    const positions = topology.domainMembers[d] ?? []
    const members = positions.map((p) => routeAt(draft, p))
    const initiatingBefore = members.find((r) => initialClass(r) === "initiating")
    const haltedBefore = members.find((r) => initialClass(r) === "halted")
    if (initiatingBefore !== undefined && haltedBefore !== undefined && !draft.unsafeStartAllowed)
      return unsafe(initiatingBefore, haltedBefore, "before")
    const initiatingAfter = members.find((r) => finalClass(r) === "initiating")
    const haltedAfter = members.find((r) => finalClass(r) === "halted")
    if (initiatingAfter !== undefined && haltedAfter !== undefined) return unsafe(initiatingAfter, haltedAfter, "after")

    const bounds = (pick: (r: DeviceRoute) => number | "before" | "after" | undefined): Array<Bound> =>
      positions.flatMap((p) => {
        const node = pick(routeAt(draft, p))
        return typeof node === "number" ? [{ device: p, node }] : []
      })
    const down = connect(
      draft,
      bounds((r) => (r.initiating?.opens === "before" ? r.initiating.closes : undefined)),
      bounds((r) => (r.halted?.closes === "after" ? r.halted.opens : undefined)),
      "InitiatorsQuiesced",
      d
    )
    if (down !== undefined) return down
    const up = connect(
      draft,
      bounds((r) => (r.halted?.opens === "before" ? r.halted.closes : undefined)),
      bounds((r) => (r.initiating?.closes === "after" ? r.initiating.opens : undefined)),
      "TargetsUnhalted",
      d
    )
    if (up !== undefined) return up
  }
  return undefined
}

/** Orders the graph (Kahn), refuses cycles (naming one), assigns levels and ids, and builds the plan value. */
const finish = (
  group: Group,
  nodes: ReadonlyArray<Node>,
  routes: ReadonlyArray<DeviceRoute>
): Result.Result<Plan, DependencyCycle> => {
  const n = nodes.length
  const after = nodes.map((node) => node.after)
  const order = orderNodes(after)
  if (order.length < n)
    return Result.fail(
      new DependencyCycle({ cycle: (findWaitCycle(after) ?? []).flatMap((i) => cycleArc(nodes[i], routes)) })
    )

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

  // A loop, not flatMap: an array per arc for flatMap to flatten doubled this step's garbage.
  const arcs: Array<PlanArc> = []
  for (const i of arcNodes) {
    const node = nodes[i]
    if (node?._tag !== "Arc") continue
    const { device, from, to } = node
    arcs.push({
      _tag: "Arc",
      id: ids[i] ?? "",
      device: deviceId(device),
      from,
      to,
      after: afterIds(node),
      level: level[i] ?? 0
    })
  }
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
    initial: deviceRecord(routes.map((r) => [r.id, r.path[0] ?? "ERROR"])),
    target: deviceRecord(routes.map((r) => [r.id, r.path.at(-1) ?? "ERROR"]))
  })
}

/** The target a named step gives each device, from its current state and flags. */
type Step = (current: State, flags: Flags) => State

const stepPlan =
  (step: Step, defaultFrom: State) =>
  (group: Group, from: StateAssignment = defaultFrom): Result.Result<Plan, PlanError> => {
    const unknown = unknownIn(group, from)
    if (unknown !== undefined)
      return Result.fail(new PlanError({ reason: new DeviceNotInGroup({ device: unknown, role: "from" }) }))
    const to = deviceRecord(group.devices.map((d) => [d.id, step(stateAt(from, d.id, defaultFrom), d.flags)] as const))
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
