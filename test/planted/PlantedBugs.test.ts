import { describe, expect, it } from "@effect/vitest"
import { type Catcher, type PlantedBug, plantedBugs } from "./Bugs.js"
import { plant } from "./Plant.js"

/**
 * The checkers can fail: each mistake in `Bugs.ts` is planted in the real code (its module
 * replaced by a mutated copy for this test only; production code has no switch for it), and the
 * checker named for it must catch it: a fuzzer within its CI budget from a random seed (each CI run
 * draws a new one), or a tier of the exhaustive checker (deterministic). The real code passes the
 * same checkers in their own tests.
 *
 * `PLANTED_SURVEY=1 npx vitest run test/planted` also runs every fuzzer against every bug from
 * several seeds and reports how many runs each took (or that it missed).
 */

const identity = <A>(a: A) => a

interface Caught {
  readonly caught: boolean
  readonly detail: string
}

const describeCatcher = (c: Catcher): string =>
  c._tag === "Fuzzer"
    ? `the ${c.name} fuzzer`
    : c._tag === "Exhaustive"
      ? `the exhaustive ${c.tier}`
      : "the exhaustive migrations"

/** Runs `catcher` on whatever modules are planted now (imported afresh). */
const run = async (catcher: Catcher, seed?: number): Promise<Caught> => {
  if (catcher._tag === "Fuzzer") {
    const { fuzzerNamed } = await import("../fuzz/Fuzzers.js")
    const { makeStats } = await import("../fuzz/Replay.js")
    const fuzzer = fuzzerNamed(catcher.name)
    const result = await fuzzer.check(makeStats(), identity, {
      numRuns: fuzzer.ciRuns,
      endOnFailure: true,
      ...(seed === undefined ? {} : { seed })
    })
    const problem = result.report
      .split("\n")
      .find((line) => line.trimStart().startsWith("- ") || line.startsWith("Got:"))
    return {
      caught: result.failed,
      detail: result.failed
        ? `caught at run ${result.numRuns} of ${fuzzer.ciRuns} from seed ${result.seed}: ${(problem ?? "").trim().slice(0, 200)}`
        : `missed in ${result.numRuns} runs from seed ${result.seed}`
    }
  }
  const tiers = await import("../exhaustive/Tiers.js")
  const result =
    catcher._tag === "Exhaustive"
      ? tiers[catcher.tier]()
      : await (async () => {
          const g = tiers.migrationGroups[catcher.group]
          if (g === undefined) throw new Error(`no migration group ${catcher.group}`)
          return tiers.migrationTier(g.name, g.group)
        })()
  return {
    caught: result.problem !== undefined,
    detail:
      result.problem === undefined
        ? `missed: ${result.line}`
        : `caught: ${result.problem.split("\n")[0]?.slice(0, 240)}`
  }
}

const withPlanted = async <A>(bug: PlantedBug, f: () => Promise<A>): Promise<A> => {
  const uproot = plant(bug.mutations)
  try {
    return await f()
  } finally {
    uproot()
  }
}

describe("planted bugs are caught", () => {
  for (const bug of plantedBugs) {
    it(`${describeCatcher(bug.catcher)} catches: ${bug.name}`, async () => {
      const found = await withPlanted(bug, () => run(bug.catcher))
      process.stdout.write(`planted (${bug.area}): ${bug.name}\n  ${describeCatcher(bug.catcher)} ${found.detail}\n`)
      expect(found.caught, found.detail).toBe(true)
    }, 300_000)
  }
})

describe.skipIf(process.env.PLANTED_SURVEY !== "1")("planted bugs: every fuzzer against every bug (survey)", () => {
  // The catching fuzzer from PLANTED_SEEDS seeds (default 20), the others from 2.
  const seeds = Number(process.env.PLANTED_SEEDS ?? "20")
  for (const bug of plantedBugs) {
    it(`survey: ${bug.name}`, async () => {
      const lines: Array<string> = []
      for (const name of ["interleavings", "model", "campaign", "sessions"] as const) {
        const own = bug.catcher._tag === "Fuzzer" && bug.catcher.name === name
        const runs: Array<string> = []
        for (let k = 0; k < (own ? seeds : 2); k++) {
          const found = await withPlanted(bug, () => run({ _tag: "Fuzzer", name }, 1000 + k * 7919))
          runs.push(found.caught ? (found.detail.match(/run (\d+)/)?.[1] ?? "?") : "missed")
        }
        lines.push(`${name}${own ? " (its catcher)" : ""}: ${runs.join(", ")}`)
      }
      process.stdout.write(`survey: ${bug.name}\n  ${lines.join("\n  ")}\n`)
    }, 7_200_000)
  }
})
