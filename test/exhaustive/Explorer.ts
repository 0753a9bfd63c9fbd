import {
  decodeGroup,
  type ErrorPolicy,
  type Group,
  type StateAssignment,
  type TransitionEvent
} from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { Deferred, Effect, Fiber } from "effect"
import { attempt, type Drive } from "../fuzz/Attempt.js"
import { describeProblems, judge, type Observed, type Outcome } from "../fuzz/Oracle.js"
import { type ModelDevice, type ModelGroup, type ModelTopology, modelGroup } from "../model/Model.js"
import { ExploredDevice, ExploredFabric, faultKinds, type InFlight, type Landing } from "./ExploredDevice.js"
import { World } from "./World.js"

/**
 * Exhaustive exploration of one group transition, on devices whose every arc ends as the explorer
 * chooses: every order in which the arcs in flight land, and at every landing, if asked, each
 * fault kind (`faultKinds`) instead, once before the rollback and once during it; and, if asked, an
 * interruption of the transition at every step (with the arcs in flight then cancelled, or landing
 * anyway). The invariant is checked at every device event with the model's rule, and every run
 * that reaches its end is judged by the oracle against the reference model.
 *
 * Stateless search with replay: a run follows a prefix of choices, then takes the first option at
 * every new choice point and queues the others. A run that reaches a group state already explored
 * is cut there: the state fixes the future (every device's state, arc in flight and how it hangs,
 * which arcs of the plan and of the rollback have started, landed or failed, where the rollback
 * began, which faults and interruptions were spent). That is how symmetric orders are reduced
 * rather than sampled.
 */

/** Which faults a scenario explores. */
export type FaultScope = "none" | "forward" | "forward and rollback"

/** One transition to explore: a group, where it starts, what it is asked. */
export interface Scenario {
  readonly devices: ReadonlyArray<ModelDevice>
  readonly topology: ModelTopology
  readonly start: Readonly<Record<string, State>>
  readonly request: StateAssignment
  readonly policy: ErrorPolicy
  readonly concurrency?: number | undefined
  readonly faults: FaultScope
  /** Also interrupt the transition at every step (one interruption per run, before any fault). */
  readonly interruptions: boolean
}

/** What exploring scenarios found, summed. */
export interface Exploration {
  /** Runs that reached the end: complete schedules, each judged. */
  schedules: number
  /** Runs cut at a group state already explored. */
  pruned: number
  /** Distinct group states reached at choice points. */
  states: number
  /** Outcomes of the complete runs. */
  readonly outcomes: Partial<Record<Outcome, number>>
  /** The first problem found, with its schedule, if any. */
  problem: string | undefined
}

export const emptyExploration = (): Exploration => ({
  schedules: 0,
  pruned: 0,
  states: 0,
  outcomes: {},
  problem: undefined
})

/** Arc timeouts: sleeps of this length are the watchdog's, which fires only when nothing else can happen. */
const arcTimeoutMs = 1_000_000

/** What every run of a scenario shares. */
interface Prepared {
  readonly model: ModelGroup
  readonly group: Group
}

const prepare = (scenario: Scenario): Prepared => ({
  model: modelGroup({ devices: scenario.devices, topology: scenario.topology }),
  group: Effect.runSync(
    Effect.orDie(decodeGroup({ devices: scenario.devices.map((d) => ({ ...d })), topology: scenario.topology }))
  )
})

/** How one run chooses at a choice point: an option's index, or "prune" to stop there. */
type Chooser = (options: ReadonlyArray<string>, key: string) => number | "prune"

interface RunResult {
  readonly pruned: boolean
  readonly outcome: Outcome | undefined
  readonly problem: string | undefined
  readonly schedule: ReadonlyArray<string>
}

/** A choice at one point: how one arc in flight ends, or an interruption. */
type Option =
  | { readonly _tag: "Land"; readonly arc: InFlight; readonly how: Landing }
  | { readonly _tag: "Interrupt"; readonly arcsLand: boolean }

const optionLabel = (o: Option): string =>
  o._tag === "Land"
    ? `${o.arc.device} ${o.arc.arc.from} → ${o.arc.arc.to} ${o.how}`
    : `interrupt${o.arcsLand ? " (arcs in flight land anyway)" : ""}`

/** One run of the scenario in a fresh world, choosing with `choose` at every choice point. */
const runOnce = (scenario: Scenario, prepared: Prepared, choose: Chooser): RunResult => {
  const { model, group } = prepared
  const world = new World(new Map())
  const fabric = new ExploredFabric(model.edges, () => world.now)
  const devices = scenario.devices.map(
    (d) => new ExploredDevice(d.id, d.kind, d.flags, scenario.start[d.id] ?? "RUNNING", fabric, () => world.now)
  )
  const runtime = { group, devices: new Map(devices.map((d) => [d.id, d.port] as const)) }
  const observed: Observed = {
    devices: new Map(
      devices.map(
        (d) => [d.id, { status: Effect.sync(() => d.status()), read: d.port.read, write: d.port.write }] as const
      )
    ),
    observe: (listener) => {
      fabric.listeners.add(listener)
      return () => fabric.listeners.delete(listener)
    },
    violations: () => fabric.violations,
    settle: Effect.void
  }
  const progress: Array<string> = []
  let rollbackAt = -1
  let forwardFault = false
  let rollbackFault = false
  let interrupted = false
  const interrupt = Deferred.makeUnsafe<void>()

  const drive: Drive = (run) =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(run, { startImmediately: true })
      const first = yield* Effect.raceFirst(
        Effect.map(Fiber.await(fiber), (exit) => ({ exit })),
        Effect.as(Deferred.await(interrupt), undefined)
      )
      if (first !== undefined) return { exit: first.exit, interrupted: false }
      yield* Fiber.interrupt(fiber)
      return { exit: yield* Fiber.await(fiber), interrupted: true }
    })
  const observe = (e: TransitionEvent) => {
    if (e._tag === "ArcStarted" || e._tag === "ArcDone" || e._tag === "ArcFailed") progress.push(`${e._tag}:${e.id}`)
    else if (e._tag === "RollbackBegun") {
      rollbackAt = progress.length
      progress.push(`rollback from ${JSON.stringify(e.states)}`)
    } else if (e._tag === "DeviceReset" || e._tag === "DeviceQuarantined") progress.push(`${e._tag}:${e.device}`)
  }
  const program = Effect.gen(function* () {
    const a = yield* attempt(
      observed,
      runtime,
      scenario.request,
      { errorPolicy: scenario.policy, arcTimeoutMs, concurrency: scenario.concurrency, onEvent: observe },
      drive
    )
    return { a, verdict: yield* judge(observed, model, a) }
  })

  /** The group state at a choice point; with a bound on arcs in flight, the order arcs started in matters too. */
  const key = (): string => {
    const part = (items: ReadonlyArray<string>) =>
      scenario.concurrency === undefined ? [...items].sort().join(",") : items.join(",")
    const devicesNow = devices
      .map((d) => {
        const hang = fabric.inFlight.find((p) => p.device === d.id)?.hang ?? ""
        return `${d.state}${d.arc === undefined ? "" : `>${d.arc.to}${hang}`}${d.quiet ? "~" : ""}`
      })
      .join("|")
    const forward = rollbackAt < 0 ? progress : progress.slice(0, rollbackAt)
    const back = rollbackAt < 0 ? [] : progress.slice(rollbackAt)
    return `${devicesNow}#${part(forward)}#${back[0] ?? ""}#${part(back.slice(1))}#${forwardFault}${rollbackFault}${interrupted}`
  }

  const schedule: Array<string> = []
  const fiber = world.start(program)
  while (fiber.pollUnsafe() === undefined) {
    const inRollback = rollbackAt >= 0
    const faultsNow =
      (!inRollback && !forwardFault && !interrupted && scenario.faults !== "none") ||
      (inRollback && !rollbackFault && scenario.faults === "forward and rollback")
    const options: Array<Option> = []
    for (const arc of fabric.inFlight) {
      if (arc.hang !== undefined) continue
      options.push({ _tag: "Land", arc, how: "lands" })
      if (faultsNow) for (const how of faultKinds) options.push({ _tag: "Land", arc, how })
    }
    if (scenario.interruptions && !interrupted && !forwardFault && !inRollback) {
      options.push({ _tag: "Interrupt", arcsLand: false })
      if (fabric.inFlight.length > 0) options.push({ _tag: "Interrupt", arcsLand: true })
    }
    if (options.length === 0) {
      const timer = world.firstTimer()
      if (timer === undefined)
        return {
          pruned: false,
          outcome: undefined,
          problem: "deadlock: nothing can happen, yet the transition has not ended",
          schedule
        }
      schedule.push("a timeout")
      world.fire(timer)
      continue
    }
    const pick = choose(options.map(optionLabel), key())
    if (pick === "prune") return { pruned: true, outcome: undefined, problem: undefined, schedule }
    const option = options[pick]
    if (option === undefined) throw new Error(`no option ${pick}`)
    schedule.push(optionLabel(option))
    world.now += 1
    if (option._tag === "Interrupt") {
      interrupted = true
      if (option.arcsLand) for (const arc of fabric.inFlight) arc.hang ??= "hangs, lands anyway"
      Deferred.doneUnsafe(interrupt, Effect.void)
    } else {
      if (option.how !== "lands") {
        if (inRollback) rollbackFault = true
        else forwardFault = true
      }
      option.arc.land(option.how)
    }
    world.drain()
  }
  const exit = fiber.pollUnsafe()
  if (exit === undefined || exit._tag === "Failure")
    return {
      pruned: false,
      outcome: undefined,
      problem: `the run died: ${String(exit?._tag === "Failure" ? exit.cause : "")}`,
      schedule
    }
  const { a, verdict } = exit.value
  return {
    pruned: false,
    outcome: verdict.outcome,
    problem: verdict.problems.length > 0 ? describeProblems(a, verdict) : undefined,
    schedule
  }
}

/**
 * Explores every schedule of `scenario` (orders, faults, interruptions as it asks), adding what it
 * finds to `into`; stops at the first problem.
 */
export const explore = (scenario: Scenario, into: Exploration = emptyExploration()): Exploration => {
  // Errors are made by the thousand here and read by nobody unless a run fails: no stack traces.
  const stackTraceLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return exploreAll(scenario, into)
  } finally {
    Error.stackTraceLimit = stackTraceLimit
  }
}

const exploreAll = (scenario: Scenario, into: Exploration): Exploration => {
  const prepared = prepare(scenario)
  const visited = new Set<string>()
  const pending: Array<ReadonlyArray<number>> = [[]]
  while (pending.length > 0 && into.problem === undefined) {
    const prefix = pending.pop() ?? []
    const choices: Array<number> = []
    const result = runOnce(scenario, prepared, (options, key) => {
      const forced = prefix[choices.length]
      if (forced !== undefined) {
        choices.push(forced)
        return forced
      }
      if (visited.has(key)) return "prune"
      visited.add(key)
      for (let i = options.length - 1; i >= 1; i--) pending.push([...choices, i])
      choices.push(0)
      return 0
    })
    if (result.pruned) into.pruned++
    else {
      into.schedules++
      if (result.outcome !== undefined) into.outcomes[result.outcome] = (into.outcomes[result.outcome] ?? 0) + 1
      if (result.problem !== undefined)
        into.problem = `${result.problem}\n  schedule: ${result.schedule.join("; ") || "(no choices)"}`
    }
  }
  into.states += visited.size
  return into
}
