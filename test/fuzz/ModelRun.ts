import { decodeGroup, type ErrorPolicy, type StateAssignment } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { Effect, ManagedRuntime } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { judgeTransition, type ModelGroup, modelGroup } from "../model/Model.js"
import {
  concurrencyArb,
  type GroupDoc,
  groupDocArb,
  policyArb,
  type RequestSpec,
  requestFor,
  requestSpecArb
} from "./Arbitraries.js"
import { attempt, virtualTimeDrive } from "./Attempt.js"
import { describeProblems, judge, observeSim, realStates } from "./Oracle.js"
import { type FuzzStats, runDone } from "./Replay.js"

/**
 * Model-based runs: `fc.commands` over one simulated group, against a reference model of what
 * every device's state must be after each command:
 * - a transition to a random target (any error policy, per-arc timeout and arc concurrency bound,
 *   sometimes interrupted after a random time): the reference model (`test/model`) says from its
 *   own states whether it must be possible and where every device ends; a refusal (exactly when
 *   the model finds no safe order) leaves everything; a failure ends where the model puts every
 *   device after a failure under the policy, from the states the device events showed when the
 *   rollback began. The model never adopts the devices' states: when a rollback cannot complete (a
 *   device failed during it), the run resets every device, and the model says RUNNING;
 * - a reset of a random device: it is then RUNNING;
 * - idle time: nothing may move behind the coordinator's back.
 * Faults are injected through each device's fault plan (failed arcs leaving it where it was, at
 * its target or in ERROR; hung arcs; data faults), which fires on the nth arc the device makes,
 * so a fault lands in whichever command and phase (forward or rollback) reaches that arc.
 * Every transition is also judged by the oracle; the model checks that the group is where it
 * must be when each command starts and ends.
 */

/** What each device's state must be, and the group as the model sees it. */
export interface GroupModel {
  states: Record<string, State>
  readonly group: ModelGroup
}

/** The system under test: the simulated group and how to run effects on its test clock. */
export interface GroupUnderTest {
  readonly sim: SimulatedGroup
  readonly run: <A>(effect: Effect.Effect<A>) => Promise<A>
  readonly stats: FuzzStats
}

type GroupCommand = fc.AsyncCommand<GroupModel, GroupUnderTest>

const statesText = (states: Readonly<Record<string, string>>): string =>
  Object.entries(states)
    .map(([id, s]) => `${id}=${s}`)
    .join(" ")

const diverged = (what: string, model: GroupModel, real: Readonly<Record<string, State>>): void => {
  const wrong = Object.keys(model.states).filter((id) => model.states[id] !== real[id])
  if (wrong.length > 0)
    throw new Error(`${what}: the model says ${statesText(model.states)}, the devices are ${statesText(real)}`)
}

class Transition implements GroupCommand {
  constructor(
    readonly request: RequestSpec,
    readonly policy: ErrorPolicy,
    readonly arcTimeoutMs: number,
    readonly interruptAtMs: number | undefined,
    readonly concurrency: number | undefined
  ) {}
  check = () => true
  async run(model: GroupModel, real: GroupUnderTest): Promise<void> {
    const { sim, stats } = real
    const request: StateAssignment = requestFor(this.request, sim.group.devices)
    const options = { errorPolicy: this.policy, arcTimeoutMs: this.arcTimeoutMs, concurrency: this.concurrency }
    const drive = virtualTimeDrive(this.interruptAtMs)
    const attempted = await real.run(
      Effect.gen(function* () {
        diverged("before the transition", model, yield* realStates(sim))
        const a = yield* attempt(observeSim(sim), sim, request, options, drive)
        return { a, v: yield* judge(observeSim(sim), model.group, a) }
      })
    )
    const a = attempted.a
    let v = attempted.v
    stats.transitions++
    stats.faults += v.faultsFired
    if (a.interrupted) stats.interruptions++
    stats.outcomes[v.outcome] = (stats.outcomes[v.outcome] ?? 0) + 1
    if (v.problems.length > 0) throw new Error(describeProblems(a, v))
    const verdict = judgeTransition(model.group.devices, model.group.edges, model.states, request)
    if (v.outcome === "refused" && verdict.possible) throw new Error("refused what the model can order")
    if (v.outcome === "succeeded" && !verdict.possible) throw new Error("succeeded where the model refuses")
    if (v.predicted !== undefined) model.states = { ...v.predicted }
    else {
      // The rollback could not complete, which the oracle allowed only after a fault during it:
      // the model cannot say where the devices are, so the run takes them all to RUNNING by reset.
      await real.run(Effect.forEach([...sim.devices.values()], (d) => Effect.orDie(d.reset), { discard: true }))
      model.states = Object.fromEntries(model.group.devices.map((d) => [d.id, "RUNNING" as State]))
      v = { ...v, states: await real.run(realStates(sim)) }
    }
    diverged("after the transition", model, v.states)
  }
  toString = () =>
    `transition(${JSON.stringify(this.request)}, ${this.policy}, timeout ${this.arcTimeoutMs} ms${this.concurrency === undefined ? "" : `, ${this.concurrency} arcs at once`}${this.interruptAtMs === undefined ? "" : `, interrupt at ${this.interruptAtMs} ms`})`
}

class Reset implements GroupCommand {
  constructor(readonly pick: number) {}
  check = () => true
  async run(model: GroupModel, real: GroupUnderTest): Promise<void> {
    const devices = [...real.sim.devices.values()]
    const device = devices[this.pick % devices.length]
    if (device === undefined) return
    const states = await real.run(Effect.andThen(Effect.orDie(device.reset), realStates(real.sim)))
    model.states[device.id] = "RUNNING"
    diverged(`after resetting ${device.id}`, model, states)
  }
  toString = () => `reset(#${this.pick})`
}

class Idle implements GroupCommand {
  constructor(readonly ms: number) {}
  check = () => true
  async run(model: GroupModel, real: GroupUnderTest): Promise<void> {
    const states = await real.run(Effect.andThen(TestClock.adjust(this.ms), realStates(real.sim)))
    diverged(`after ${this.ms} ms idle`, model, states)
  }
  toString = () => `idle(${this.ms} ms)`
}

const commandArbs: ReadonlyArray<fc.Arbitrary<GroupCommand>> = [
  fc
    .record({
      request: requestSpecArb,
      policy: policyArb,
      arcTimeoutMs: fc.oneof(
        { weight: 8, arbitrary: fc.integer({ min: 8, max: 40 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: 5 }) }
      ),
      interruptAtMs: fc.oneof(
        { weight: 4, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 20 }) }
      ),
      concurrency: concurrencyArb
    })
    .map((t): GroupCommand => new Transition(t.request, t.policy, t.arcTimeoutMs, t.interruptAtMs, t.concurrency)),
  fc.nat().map((pick): GroupCommand => new Reset(pick)),
  fc.integer({ min: 1, max: 50 }).map((ms): GroupCommand => new Idle(ms))
]

/** A group and a command sequence to run on it. */
export const modelRunArb = fc.tuple(
  groupDocArb({ maxDevices: 8, faultWeight: 4 }),
  fc.integer({ min: 0, max: 1_000_000 }),
  fc.commands([...commandArbs], { maxCommands: 16, size: "+1" })
)

/** Builds the group on a fresh test clock and runs `commands` against the model. */
export const runModel = async (
  doc: GroupDoc,
  seed: number,
  commands: Iterable<GroupCommand>,
  stats: FuzzStats,
  provide: <A>(e: Effect.Effect<A>) => Effect.Effect<A>
): Promise<void> => {
  const runtime = ManagedRuntime.make(TestClock.layer())
  try {
    const run = <A>(effect: Effect.Effect<A>): Promise<A> => runtime.runPromise(provide(effect))
    const group = modelGroup(doc)
    const sim = await run(
      Effect.orDie(
        Effect.flatMap(decodeGroup(doc), (decoded) =>
          simulateGroup(decoded, {
            seed,
            defaults: { stateSize: 4096, pageSize: 1024, dirtyBytesPerSecond: 8192 },
            edges: group.edges
          })
        )
      )
    )
    // Every device starts in RUNNING (DESIGN.md section 1).
    const states = Object.fromEntries(group.devices.map((d) => [d.id, "RUNNING" as State]))
    await fc.asyncModelRun(() => ({ model: { states, group }, real: { sim, run, stats } }), commands)
    runDone(stats)
  } finally {
    await runtime.dispose()
  }
}

/** The model-based property. */
export const modelProperty = (stats: FuzzStats, provide: <A>(e: Effect.Effect<A>) => Effect.Effect<A>) =>
  fc.asyncProperty(modelRunArb, async ([doc, seed, commands]) => runModel(doc, seed, commands, stats, provide))
