import { createHash } from "node:crypto"
import type { Fault } from "@lockstep/sim"
import { runOnVirtualTime } from "@lockstep/sim"
import { Clock, Duration, Effect, Scheduler } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { type MigrationGroup, type Perturbation, prepareMigration, runPrepared } from "../exhaustive/Migrations.js"
import { blockersOf, kernelPath, modelGroup } from "../model/Model.js"
import { concurrencyArb, groupDocArb, policyArb } from "./Arbitraries.js"
import { type FuzzStats, runDone } from "./Replay.js"

/**
 * The migration sessions, fuzzed: a source and a destination session (`migrateSource`,
 * `migrateDestination`) over an in-memory channel, with everything that waits for time
 * (arcs landing, per-arc and peer timeouts, pacing) released in the order fast-check's scheduler
 * picks; faults of every kind on either side (arcs failing where they were, at their target or into
 * ERROR, hanging and perhaps landing anyway, corrupt or short data, failed reads and writes); and
 * the channel cut after any number of messages in either direction. Every run is judged against
 * the model (`test/exhaustive/Migrations.ts`): both sides end, one owner by the journal, every
 * device where the model puts it for that owner, a committed destination equal to its source, the
 * groups never both running, no ordering violation, no data session left open.
 */

/** One perturbed migration. */
export interface SessionCase {
  readonly group: MigrationGroup
  readonly perturbation: Perturbation
  /** Timeouts (per-arc, peer) race everything else; otherwise they never fire unless an arc hangs. */
  readonly timeouts: boolean
}

export const sessionCaseArb: fc.Arbitrary<SessionCase> = fc
  .tuple(
    // Migratable groups only (a blocked one is refused before anything moves, and tested elsewhere).
    groupDocArb({ maxDevices: 3, faultWeight: 3 }).filter((doc) => {
      const model = modelGroup(doc)
      return blockersOf(model.devices, model.edges).length === 0
    }),
    groupDocArb({ minDevices: 3, maxDevices: 3, faultWeight: 3 }),
    fc.option(fc.record({ direction: fc.constantFrom("source" as const, "destination" as const), after: fc.nat(24) }), {
      nil: undefined,
      freq: 3
    }),
    policyArb,
    fc.boolean(),
    concurrencyArb,
    fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) })
  )
  .map(([doc, other, cut, policy, precopy, arcConcurrency, timeouts]): SessionCase => {
    // The destination's faults come from a second draw, device by device, and count arcs from
    // the migration's start: its devices first park in STOP (one or two arcs) before it begins.
    const faults = (pick: (i: number) => ReadonlyArray<Fault> | undefined) =>
      Object.fromEntries(doc.devices.map((d, i) => [d.id, pick(i) ?? []]))
    const afterParking = (flags: number, plan: ReadonlyArray<Fault> | undefined): ReadonlyArray<Fault> => {
      const walk = kernelPath(flags, "RUNNING", "STOP")
      const parking = walk.ok ? walk.states.length - 1 : 0
      return (plan ?? []).map((f) =>
        f._tag === "FailArc" || f._tag === "HangArc" || f._tag === "LandOnInterrupt"
          ? { ...f, nth: parking + (f.nth ?? 1) }
          : f
      )
    }
    return {
      group: { devices: doc.devices.map((d) => ({ id: d.id, kind: d.kind, flags: d.flags })), topology: doc.topology },
      perturbation: {
        source: faults((i) => doc.devices[i]?.sim.faults),
        destination: faults((i) => afterParking(doc.devices[i]?.flags ?? 1, other.devices[i]?.sim.faults)),
        cut,
        policy,
        precopy,
        arcConcurrency
      },
      timeouts
    }
  })

/** Sleeps at least this long are timeouts (per-arc 200 ms, peer 2 s, grace): the rest are arcs and pacing. */
const timeoutMs = 100

/** A timeout waiting for the migration to be stuck. */
interface Timer {
  readonly ms: number
  readonly order: number
  readonly fire: () => void
}

/**
 * A clock whose sleeps wait for the scheduler: time moves one tick per released sleep. Short
 * sleeps (arcs landing, pacing) are scheduled tasks; so are timeouts if `timeouts`, racing
 * everything. Otherwise a timeout waits in `timers` until nothing else can happen (an arc lands
 * long before its timeout, a live peer answers long before the peer timeout), and the drive fires
 * the earliest one then.
 */
const scheduledClock = (s: fc.Scheduler, timeouts: boolean, timers: Array<Timer>): Clock.Clock => {
  // Later than anything the groups' preparation did on the test clock.
  let ticks = 1_000_000
  let registered = 0
  const tick = Effect.sync(() => {
    ticks++
  })
  const sleep = (duration: Duration.Duration): Effect.Effect<void> => {
    const ms = Duration.toMillis(duration)
    if (ms < timeoutMs || timeouts)
      return Effect.andThen(
        Effect.promise(() => s.schedule(Promise.resolve(), `sleep ${ms} ms`)),
        tick
      )
    return Effect.andThen(
      Effect.callback<void>((resume) => {
        const timer: Timer = { ms, order: registered++, fire: () => resume(Effect.void) }
        timers.push(timer)
        return Effect.sync(() => {
          const i = timers.indexOf(timer)
          if (i >= 0) timers.splice(i, 1)
        })
      }),
      tick
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

/**
 * Runs `run` to its end, releasing one scheduled task at a time in the scheduler's order; when
 * nothing is scheduled, fires the earliest waiting timeout; when there is none either, the
 * migration is stuck.
 */
const drive = async <A>(s: fc.Scheduler, timers: Array<Timer>, run: Promise<A>): Promise<A> => {
  let finished = false
  const result = run.finally(() => {
    finished = true
  })
  for (let idle = 0; !finished; ) {
    await new Promise<void>((resolve) => setImmediate(resolve))
    if (finished) break
    if (s.count() > 0) {
      idle = 0
      await s.waitOne()
      continue
    }
    timers.sort((a, b) => a.ms - b.ms || a.order - b.order)
    const timer = timers.shift()
    if (timer !== undefined) {
      idle = 0
      timer.fire()
      continue
    }
    if (++idle > 20)
      throw new Error("deadlock: nothing is scheduled, no timeout is waiting, and the migration has not ended")
  }
  return result
}

/** A hung arc ends only by its timeout, so a case with hangs always races timeouts. */
const hangs = (c: SessionCase): boolean =>
  [c.perturbation.source, c.perturbation.destination].some((side) =>
    Object.values(side ?? {}).some((plan) => plan.some((f) => f._tag === "HangArc"))
  )

/** The sessions property: every perturbed migration, in every order the scheduler picks, keeps the contract. */
export const sessionsProperty = (stats: FuzzStats, provide: <A>(e: Effect.Effect<A>) => Effect.Effect<A>) =>
  fc.asyncProperty(sessionCaseArb, fc.scheduler(), async (c, s) => {
    // The groups are built (the destination parked) on the test clock; only the migration is scheduled.
    const prepared = await Effect.runPromise(
      provide(runOnVirtualTime(prepareMigration(c.group, c.perturbation))).pipe(Effect.provide(TestClock.layer()))
    )
    const timers: Array<Timer> = []
    const program = runPrepared(prepared, c.perturbation).pipe(
      Effect.provideService(Clock.Clock, scheduledClock(s, c.timeouts || hangs(c), timers)),
      Effect.provideService(Scheduler.Scheduler, new Scheduler.MixedScheduler("sync"))
    )
    const result = await drive(s, timers, Effect.runPromise(provide(program)))
    runDone(stats)
    stats.transitions++
    stats.outcomes[`owner ${result.owner}`] = (stats.outcomes[`owner ${result.owner}`] ?? 0) + 1
    if (c.perturbation.cut !== undefined) stats.interruptions++
    const order = s
      .report()
      .filter((t) => t.status !== "pending")
      .map((t) => t.label)
    stats.scheduledSteps += order.length
    stats.interleavings.add(
      createHash("sha1")
        .update(JSON.stringify([c, order]))
        .digest("base64")
    )
    if (result.problems.length > 0) throw new Error(result.problems.join("\n"))
  })
