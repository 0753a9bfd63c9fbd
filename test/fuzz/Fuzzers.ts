import { expect, it } from "@effect/vitest"
import type { Effect } from "effect"
import type * as fc from "fast-check"
import { campaignProperty } from "./Campaign.js"
import { interleavingProperty } from "./Interleavings.js"
import { modelProperty } from "./ModelRun.js"
import {
  checkFuzz,
  type FuzzResult,
  type FuzzStats,
  formatStats,
  makeStats,
  type PropertyName,
  report
} from "./Replay.js"
import { sessionsProperty } from "./Sessions.js"

/** Wraps every effect a fuzzer runs (a service a test substitutes, say); the real code needs nothing. */
export type Provide = <A>(effect: Effect.Effect<A>) => Effect.Effect<A>

/** Nothing wrapped: the real code. */
export const realCode: Provide = (effect) => effect

/** The fast-check settings a fuzz run takes (none depends on the property's values). */
export type FuzzParameters = Pick<
  fc.Parameters<unknown>,
  "numRuns" | "seed" | "path" | "endOnFailure" | "interruptAfterTimeLimit" | "markInterruptAsFailure"
>

export type FuzzerName = "interleavings" | "model" | "campaign" | "sessions"

/** One fuzzer: where its CI test lives (for replay commands), its CI budget, and how to check it. */
export interface Fuzzer {
  readonly name: FuzzerName
  readonly ci: PropertyName
  /** Runs in the CI suite (`npm test`). */
  readonly ciRuns: number
  /** Checks the fuzzer's property (replaying `FUZZ_SEED` / `FUZZ_PATH` if set); never throws. */
  readonly check: (stats: FuzzStats, provide: Provide, parameters: FuzzParameters) => Promise<FuzzResult>
}

const interleavings: PropertyName = {
  file: "test/fuzz/Interleavings.test.ts",
  test: "every order of concurrent arcs that the scheduler picks keeps the contract",
  fuzzer: "interleavings"
}
const model: PropertyName = {
  file: "test/fuzz/ModelRun.test.ts",
  test: "command sequences keep every device where the model says",
  fuzzer: "model"
}
const sessions: PropertyName = {
  file: "test/fuzz/Sessions.test.ts",
  test: "perturbed migrations in every order the scheduler picks keep the contract",
  fuzzer: "sessions"
}
const campaign: PropertyName = {
  file: "test/fuzz/Campaign.test.ts",
  test: "random groups, fault plans, timeouts and interruptions keep the contract",
  fuzzer: "campaign"
}

/** Every fuzzer, in the order the long runner gives them time. */
export const fuzzers: ReadonlyArray<Fuzzer> = [
  {
    name: "interleavings",
    ci: interleavings,
    ciRuns: 2500,
    check: (stats, provide, parameters) => checkFuzz(interleavings, interleavingProperty(stats, provide), parameters)
  },
  {
    name: "model",
    ci: model,
    ciRuns: 1000,
    check: (stats, provide, parameters) => checkFuzz(model, modelProperty(stats, provide), parameters)
  },
  {
    name: "campaign",
    ci: campaign,
    ciRuns: 2500,
    check: (stats, provide, parameters) => checkFuzz(campaign, campaignProperty(stats, provide), parameters)
  },
  {
    name: "sessions",
    ci: sessions,
    ciRuns: 300,
    check: (stats, provide, parameters) => checkFuzz(sessions, sessionsProperty(stats, provide), parameters)
  }
]

/** The fuzzer called `name`. */
export const fuzzerNamed = (name: string): Fuzzer => {
  const fuzzer = fuzzers.find((f) => f.name === name)
  if (fuzzer === undefined)
    throw new Error(`no fuzzer ${name}; the fuzzers are ${fuzzers.map((f) => f.name).join(", ")}`)
  return fuzzer
}

/**
 * The CI test of a fuzzer: its CI budget of runs on the real code, from a random seed (or the
 * replay in `FUZZ_SEED` / `FUZZ_PATH`); a failure's message ends with the replay command.
 */
export const fuzzInCi = (name: FuzzerName): void => {
  const fuzzer = fuzzerNamed(name)
  it(fuzzer.ci.test, async () => {
    const stats = makeStats()
    const started = Date.now()
    const result = await fuzzer.check(stats, realCode, { numRuns: fuzzer.ciRuns })
    report(`${formatStats(fuzzer.name, stats, Date.now() - started)} (seed ${result.seed})`)
    if (result.failed) expect.fail(result.report)
  })
}
