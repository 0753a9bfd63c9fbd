import { createHash } from "node:crypto"
import { decodeGroup, type ErrorPolicy, type GroupRuntime } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { type State, StateNumber } from "@lockstep/fsm"
import { simulateGroup } from "@lockstep/sim"
import { Clock, Duration, Effect, Fiber, Scheduler } from "effect"
import * as fc from "fast-check"
import { directArcs, modelGroup } from "../model/Model.js"
import {
  concurrencyArb,
  type GroupDoc,
  groupDocArb,
  policyArb,
  type RequestSpec,
  requestFor,
  requestSpecArb,
  rollbackCombinationArb
} from "./Arbitraries.js"
import { attempt, type Drive } from "./Attempt.js"
import { describeProblems, judge, observeSim } from "./Oracle.js"
import { type FuzzStats, runDone } from "./Replay.js"

/**
 * Interleavings: fast-check's scheduler picks the order in which everything concurrent in a
 * group transition happens. Three kinds of step wait for it:
 * - an arc's start: each device is wrapped in a `Device` decorator whose `setState` (and
 *   `reset`) first awaits a scheduled task, so the order in which the runner's concurrent arcs
 *   reach their devices is chosen;
 * - an arc's landing: the simulated devices sleep their arc latency on a `Clock` whose sleeps
 *   are scheduled tasks, so an arc stays in flight (counting as both its ends in the fabric)
 *   until fast-check lets it land, and arcs overlap in every order;
 * - optionally, the per-arc timeouts (they then race the landings) and an interruption of the
 *   whole transition.
 * No time passes otherwise: nothing but the scheduler decides. The fabric checks the invariant
 * at every step, the oracle judges every transition.
 */

/** A scenario: a group, up to three transitions, and which races are open. */
export interface InterleavingCase {
  readonly doc: GroupDoc
  readonly steps: ReadonlyArray<{ readonly request: RequestSpec; readonly policy: ErrorPolicy }>
  /** Timeouts race the arcs. */
  readonly timeouts: boolean
  /** Interrupt one transition (by index) at a point the scheduler picks. */
  readonly interrupt: number | undefined
  /** At most this many arcs in flight at once, if set. */
  readonly concurrency: number | undefined
}

export const interleavingCaseArb: fc.Arbitrary<InterleavingCase> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      doc: groupDocArb({ maxDevices: 6, faultWeight: 2 }),
      steps: fc.array(fc.record({ request: requestSpecArb, policy: policyArb }), { minLength: 1, maxLength: 3 }),
      timeouts: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      interrupt: fc.oneof(
        { weight: 3, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 }) }
      ),
      concurrency: concurrencyArb
    })
  },
  {
    // Rare rollbacks on purpose, in every order the scheduler picks.
    weight: 1,
    arbitrary: fc.tuple(rollbackCombinationArb, concurrencyArb).map(
      ([r, concurrency]): InterleavingCase => ({
        doc: r.doc,
        steps: r.steps,
        timeouts: false,
        interrupt: undefined,
        concurrency
      })
    )
  }
)

/** A distinct latency per (device, arc), so that a sleep tells the clock which arc it is. */
const latencyCode = (device: number, from: State, to: State): number =>
  1000 + 64 * device + 8 * StateNumber[from] + StateNumber[to]

/** Arc timeouts in these runs: far above every latency code. */
const arcTimeoutMs = 60_000

const waitFor = (s: fc.Scheduler, label: string): Effect.Effect<void> =>
  Effect.promise(() => s.schedule(Promise.resolve(), label))

/**
 * A clock on which time moves one tick per released step and every sleep is a scheduled task:
 * an arc's latency lands when the scheduler says; a timeout fires when it says, or never.
 */
const scheduledClock = (s: fc.Scheduler, labels: ReadonlyMap<number, string>, timeouts: boolean): Clock.Clock => {
  let ticks = 0
  const sleep = (duration: Duration.Duration): Effect.Effect<void> => {
    const ms = Duration.toMillis(duration)
    const label = labels.get(ms) ?? (timeouts ? `timeout after ${ms} ms` : undefined)
    if (label === undefined) return Effect.never
    return Effect.andThen(
      waitFor(s, label),
      Effect.sync(() => {
        ticks++
      })
    )
  }
  return {
    currentTimeMillisUnsafe: () => ticks,
    currentTimeMillis: Effect.sync(() => ticks),
    currentTimeNanosUnsafe: () => BigInt(ticks) * 1_000_000n,
    currentTimeNanos: Effect.sync(() => BigInt(ticks) * 1_000_000n),
    monotonicTimeNanosUnsafe: () => BigInt(ticks) * 1_000_000n,
    monotonicTimeNanos: Effect.sync(() => BigInt(ticks) * 1_000_000n),
    sleep
  }
}

/** The decorator: a device whose arcs and resets start when the scheduler says. */
const scheduledDevice = (s: fc.Scheduler, device: Device): Device => ({
  ...device,
  setState: (to) => Effect.andThen(waitFor(s, `${device.id} starts its arc to ${to}`), device.setState(to)),
  reset: Effect.andThen(waitFor(s, `${device.id} resets`), device.reset)
})

/** Runs the transition; if asked, interrupts it when the scheduler releases the interruption. */
const scheduledDrive =
  (s: fc.Scheduler, interrupt: boolean): Drive =>
  (run) =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(run, { startImmediately: true })
      let interrupted = false
      if (interrupt) {
        yield* waitFor(s, "interrupt the transition")
        if (fiber.pollUnsafe() === undefined) {
          interrupted = true
          yield* Fiber.interrupt(fiber)
        }
      }
      return { exit: yield* Fiber.await(fiber), interrupted }
    })

/** One scenario under the scheduler; answers every broken rule. */
export const runInterleavingCase = (
  c: InterleavingCase,
  s: fc.Scheduler,
  stats: FuzzStats
): Effect.Effect<ReadonlyArray<string>> => {
  const labels = new Map<number, string>()
  const devices = c.doc.devices.map((d, i) => {
    const arcLatenciesMs: Record<string, number> = {}
    for (const arc of directArcs(d.flags)) {
      const code = latencyCode(i, arc.from, arc.to)
      arcLatenciesMs[`${arc.from}>${arc.to}`] = code
      labels.set(code, `${d.id} lands ${arc.from} → ${arc.to}`)
    }
    return { ...d, sim: { ...d.sim, arcLatenciesMs } }
  })
  const program = Effect.gen(function* () {
    const group = yield* Effect.orDie(decodeGroup({ ...c.doc, devices }))
    const model = modelGroup(c.doc)
    const sim = yield* Effect.orDie(
      simulateGroup(group, {
        defaults: { stateSize: 4096, pageSize: 1024, dirtyBytesPerSecond: 0 },
        edges: model.edges
      })
    )
    const runtime: GroupRuntime = {
      group,
      devices: new Map([...sim.devices].map(([id, d]) => [id, scheduledDevice(s, d)]))
    }
    const problems: Array<string> = []
    for (const [k, step] of c.steps.entries()) {
      const request = requestFor(step.request, group.devices)
      const a = yield* attempt(
        observeSim(sim),
        runtime,
        request,
        { errorPolicy: step.policy, arcTimeoutMs, concurrency: c.concurrency },
        scheduledDrive(s, c.interrupt === k)
      )
      const v = yield* judge(observeSim(sim), model, a)
      stats.transitions++
      stats.faults += v.faultsFired
      if (a.interrupted) stats.interruptions++
      stats.outcomes[v.outcome] = (stats.outcomes[v.outcome] ?? 0) + 1
      if (v.problems.length > 0) {
        problems.push(describeProblems(a, v))
        break
      }
    }
    return problems
  })
  // A hung arc ends only by its timeout, so a scenario with hangs always races timeouts.
  const hangs = c.doc.devices.some((d) => d.sim.faults.some((f) => f._tag === "HangArc"))
  return program.pipe(
    Effect.provideService(Clock.Clock, scheduledClock(s, labels, c.timeouts || hangs)),
    // Fibers hand over through microtasks only, which the scheduler waits for between steps.
    Effect.provideService(Scheduler.Scheduler, new Scheduler.MixedScheduler("sync"))
  )
}

/** The interleaving property: every order the scheduler picks keeps the contract. */
export const interleavingProperty = (stats: FuzzStats, provide: <A>(e: Effect.Effect<A>) => Effect.Effect<A>) =>
  fc.asyncProperty(interleavingCaseArb, fc.scheduler(), async (c, s) => {
    const run = s.waitFor(Effect.runPromise(provide(runInterleavingCase(c, s, stats))))
    let timer: NodeJS.Timeout | undefined
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `deadlock: nothing left to schedule\n${s
                .report()
                .map((t) => `${t.status} ${t.label}`)
                .join("\n")}`
            )
          ),
        10_000
      )
    })
    const problems = await Promise.race([run, stuck]).finally(() => clearTimeout(timer))
    const order = s
      .report()
      .filter((t) => t.status !== "pending")
      .map((t) => t.label)
    runDone(stats)
    stats.scheduledSteps += order.length
    stats.interleavings.add(createHash("sha1").update(order.join("|")).digest("base64"))
    if (problems.length > 0) throw new Error(`${problems.join("\n")}\nscheduled steps: ${order.join(", ")}`)
  })
