import { decodeGroup, type ErrorPolicy, Migratability, type TransitionEvent } from "@lockstep/coordinator"
import { simulateGroup } from "@lockstep/sim"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { blockersOf, judgeTransition, type ModelGroup, modelGroup } from "../model/Model.js"
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
import { attempt, virtualTimeDrive } from "./Attempt.js"
import { type Attempt, describeProblems, judge, observeSim } from "./Oracle.js"
import { type FuzzStats, runDone } from "./Replay.js"

/**
 * Campaigns: random groups (1-12 devices of every kind, random flag sets, shared-IOMMU / none /
 * explicit topologies, blocked ones included), random fault plans over every fault kind of the
 * simulator (any arc, any nth, leaving the device where it was, at its target or in ERROR;
 * hangs), random arc latencies, per-arc timeouts and interruption points, on virtual time.
 * A fifth of the scenarios are built to make rare rollbacks common (`rollbackCombinationArb`:
 * a quarantined initiator, one-way edges, halted starts). Each scenario checks the migratability
 * report against the model first, then runs one to three transitions, each judged by the oracle,
 * and checks that every plan the executor announces walks each device's kernel path (the model's).
 */

/** One transition of a scenario. */
export interface CampaignStep {
  readonly request: RequestSpec
  readonly policy: ErrorPolicy
  readonly arcTimeoutMs: number
  /** Interrupt the transition after this many ms of virtual time, if it still runs. */
  readonly interruptAtMs: number | undefined
  /** At most this many arcs in flight at once, if set. */
  readonly concurrency?: number | undefined
}

/** A scenario: a group, its seed, and the transitions to run. */
export interface CampaignCase {
  readonly doc: GroupDoc
  readonly seed: number
  readonly steps: ReadonlyArray<CampaignStep>
}

const stepArb: fc.Arbitrary<CampaignStep> = fc.record({
  request: requestSpecArb,
  policy: policyArb,
  // Mostly above every latency (at most 4 ms per arc); sometimes below, to time out healthy arcs.
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

/** A rollback combination as campaign steps: arcs never time out, nothing interrupts. */
const rollbackCampaignArb: fc.Arbitrary<CampaignCase> = fc
  .tuple(rollbackCombinationArb, fc.integer({ min: 0, max: 1_000_000 }), concurrencyArb)
  .map(([r, seed, concurrency]) => ({
    doc: r.doc,
    seed,
    steps: r.steps.map((s) => ({ ...s, arcTimeoutMs: 40, interruptAtMs: undefined, concurrency }))
  }))

export const campaignCaseArb: fc.Arbitrary<CampaignCase> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      doc: groupDocArb({ maxDevices: 12 }),
      seed: fc.integer({ min: 0, max: 1_000_000 }),
      steps: fc.array(stepArb, { minLength: 1, maxLength: 3 })
    })
  },
  { weight: 1, arbitrary: rollbackCampaignArb }
)

/** The migratability report must name exactly the model's blockers, each with its edges. */
const migratabilityProblems = (report: Migratability.Report, model: ModelGroup): Array<string> => {
  const expected = blockersOf(model.devices, model.edges)
  const named = report.blockers.map((b) => b.device)
  const problems: Array<string> = []
  if (named.join() !== expected.join())
    problems.push(`blockers ${named.join(",") || "none"}, expected ${expected.join(",") || "none"}`)
  if (report.migratable !== (expected.length === 0)) problems.push(`migratable is ${report.migratable}`)
  for (const b of report.blockers) {
    const targets = model.edges.filter(([a]) => a === b.device)
    if (b.edgeCount !== targets.length)
      problems.push(`${b.device}: edgeCount ${b.edgeCount}, expected ${targets.length}`)
    for (const [a, t] of b.edges)
      if (a !== b.device || !targets.some(([, u]) => u === t)) problems.push(`${b.device}: no edge ${a} → ${t}`)
  }
  return problems
}

/** The plan the executor announced must walk every device's kernel path, as the model walks it. */
const planProblems = (model: ModelGroup, a: Attempt): Array<string> => {
  const ready = a.events.find((e): e is Extract<TransitionEvent, { _tag: "PlanReady" }> => e._tag === "PlanReady")
  const verdict = judgeTransition(model.devices, model.edges, a.start, a.request)
  if (ready === undefined || !verdict.possible) return []
  const problems: Array<string> = []
  for (const d of model.devices) {
    const arcs = ready.plan.arcs.filter((arc) => arc.device === d.id)
    const walked = [a.start[d.id] ?? "RUNNING"]
    for (let at = walked[0]; ; ) {
      const next = arcs.find((arc) => arc.from === at)
      if (next === undefined || walked.length > arcs.length) break
      walked.push(next.to)
      at = next.to
    }
    const expected = verdict.paths[d.id] ?? []
    if (walked.length !== arcs.length + 1 || walked.join() !== expected.join())
      problems.push(
        `the plan walks ${d.id} ${walked.join(" → ")} (${arcs.length} arcs), the kernel ${expected.join(" → ")}`
      )
  }
  return problems
}

/** Runs one scenario on the test clock; answers every broken rule (empty when all held). */
export const runCampaignCase = (c: CampaignCase, stats: FuzzStats): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function* () {
    const group = yield* Effect.orDie(decodeGroup(c.doc))
    const model = modelGroup(c.doc)
    const sim = yield* Effect.orDie(
      simulateGroup(group, {
        seed: c.seed,
        defaults: { stateSize: 4096, pageSize: 1024, dirtyBytesPerSecond: 8192 },
        edges: model.edges
      })
    )
    const report = Migratability.check(group)
    const problems = migratabilityProblems(report, model)
    // A caller that consults the report first touches nothing in a blocked group.
    if (!report.migratable && sim.fabric.trace().length > 0) problems.push("a blocked group was touched")
    for (const step of c.steps) {
      const request = requestFor(step.request, group.devices)
      const a = yield* attempt(
        observeSim(sim),
        sim,
        request,
        { errorPolicy: step.policy, arcTimeoutMs: step.arcTimeoutMs, concurrency: step.concurrency },
        virtualTimeDrive(step.interruptAtMs)
      )
      const v = yield* judge(observeSim(sim), model, a)
      stats.transitions++
      stats.faults += v.faultsFired
      if (a.interrupted) stats.interruptions++
      stats.outcomes[v.outcome] = (stats.outcomes[v.outcome] ?? 0) + 1
      const wrongPlan = planProblems(model, a)
      if (v.problems.length > 0 || wrongPlan.length > 0) {
        problems.push(describeProblems(a, { ...v, problems: [...v.problems, ...wrongPlan] }))
        break
      }
    }
    runDone(stats)
    return problems
  })

/** The campaign property: every scenario keeps the contract. */
export const campaignProperty = (stats: FuzzStats, provide: <A>(e: Effect.Effect<A>) => Effect.Effect<A>) =>
  fc.asyncProperty(campaignCaseArb, async (c) => {
    const problems = await Effect.runPromise(provide(runCampaignCase(c, stats)).pipe(Effect.provide(TestClock.layer())))
    if (problems.length > 0) throw new Error(problems.join("\n"))
  })
