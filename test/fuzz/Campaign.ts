import {
  decodeGroup,
  type ErrorPolicy,
  Migratability,
  type Topology,
  type TransitionEvent,
  verifyPlan
} from "@lockstep/coordinator"
import { hasFlag } from "@lockstep/fsm"
import { simulateGroup } from "@lockstep/sim"
import { Effect, Result } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { type GroupDoc, groupDocArb, policyArb, type RequestSpec, requestFor, requestSpecArb } from "./Arbitraries.js"
import { attempt, describeProblems, judge, virtualTimeDrive } from "./Oracle.js"
import { type FuzzStats, runDone } from "./Replay.js"

/**
 * Campaigns: random groups (1-12 devices of every kind, random flag sets, shared-IOMMU / none /
 * explicit topologies, blocked ones included), random fault plans over every fault kind of the
 * simulator (any arc, any nth, leaving the device where it was, at its target or in ERROR;
 * hangs), random arc latencies, per-arc timeouts and interruption points, on virtual time.
 * Each scenario checks the migratability report first, then runs one to three transitions,
 * each judged by the oracle, and proves every plan the executor announces with `verifyPlan`.
 */

/** One transition of a scenario. */
export interface CampaignStep {
  readonly request: RequestSpec
  readonly policy: ErrorPolicy
  readonly arcTimeoutMs: number
  /** Interrupt the transition after this many ms of virtual time, if it still runs. */
  readonly interruptAtMs: number | undefined
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
  )
})

export const campaignCaseArb: fc.Arbitrary<CampaignCase> = fc.record({
  doc: groupDocArb({ maxDevices: 12 }),
  seed: fc.integer({ min: 0, max: 1_000_000 }),
  steps: fc.array(stepArb, { minLength: 1, maxLength: 3 })
})

/** The migratability report must name exactly the initiators without P2P, with their edges. */
const migratabilityProblems = (group: Migratability.Report, doc: GroupDoc, topology: Topology): Array<string> => {
  const expected = doc.devices
    .filter((d) => !hasFlag(d.flags, "P2P") && topology.hasOutgoingEdge(d.id))
    .map((d) => d.id)
  const named = group.blockers.map((b) => b.device)
  const problems: Array<string> = []
  if (named.join() !== expected.join())
    problems.push(`blockers ${named.join(",") || "none"}, expected ${expected.join(",") || "none"}`)
  if (group.migratable !== (expected.length === 0)) problems.push(`migratable is ${group.migratable}`)
  for (const b of group.blockers) {
    if (b.edgeCount !== topology.targetsOf(b.device).length) problems.push(`${b.device}: edgeCount ${b.edgeCount}`)
    for (const [a, t] of b.edges)
      if (a !== b.device || !topology.hasEdge(a, t)) problems.push(`${b.device}: edge ${a} → ${t}`)
  }
  return problems
}

/** Runs one scenario on the test clock; answers every broken rule (empty when all held). */
export const runCampaignCase = (c: CampaignCase, stats: FuzzStats): Effect.Effect<ReadonlyArray<string>> =>
  Effect.gen(function* () {
    const group = yield* Effect.orDie(decodeGroup(c.doc))
    const sim = yield* Effect.orDie(
      simulateGroup(group, {
        seed: c.seed,
        defaults: { stateSize: 4096, pageSize: 1024, dirtyBytesPerSecond: 8192 }
      })
    )
    const report = Migratability.check(group)
    const problems = migratabilityProblems(report, c.doc, group.topology)
    // A caller that consults the report first touches nothing in a blocked group.
    if (!report.migratable && sim.fabric.trace().length > 0) problems.push("a blocked group was touched")
    for (const step of c.steps) {
      const request = requestFor(step.request, group.devices)
      const a = yield* attempt(
        sim,
        sim,
        request,
        { errorPolicy: step.policy, arcTimeoutMs: step.arcTimeoutMs },
        virtualTimeDrive(step.interruptAtMs)
      )
      const v = yield* judge(sim, a)
      stats.transitions++
      stats.faults += v.faultsFired
      if (a.interrupted) stats.interruptions++
      stats.outcomes[v.outcome] = (stats.outcomes[v.outcome] ?? 0) + 1
      const plan = a.events.find((e): e is Extract<TransitionEvent, { _tag: "PlanReady" }> => e._tag === "PlanReady")
      const proof = plan === undefined ? Result.void : verifyPlan(plan.plan, group, a.start)
      const unproven = Result.isFailure(proof) ? [`the executor ran an unsafe plan: ${proof.failure.message}`] : []
      if (v.problems.length > 0 || unproven.length > 0) {
        problems.push(describeProblems(a, { ...v, problems: [...v.problems, ...unproven] }))
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
