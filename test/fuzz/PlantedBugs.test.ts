import { describe, expect, it } from "@effect/vitest"
import { PlantedBug, PlantedBugs } from "@lockstep/coordinator"
import { Effect } from "effect"
import { type FuzzerName, fuzzers, type Provide } from "./Fuzzers.js"
import { makeStats, replayCommand, report } from "./Replay.js"

/**
 * The fuzzers can fail: each bug planted through the coordinator's `PlantedBug` seam (in the real
 * planner, runner and rollback, not in a copy) must make each fuzzer's property fail. The seed
 * that catches it is kept here, so the catch is deterministic and fast; the real code passes the
 * same properties in the other fuzz tests.
 *
 * If a change to the fuzzers' generators moves a catch, `FUZZ_FIND_SEEDS=1 npx vitest run
 * test/fuzz/PlantedBugs.test.ts` searches from random seeds and prints the ones to keep.
 */
const catchingSeeds: Record<PlantedBug, Record<FuzzerName, number>> = {
  "stop-target-before-initiator-quiesces": { interleavings: 1140770362, model: -1308381255, campaign: 1988116645 },
  "skip-rollback-of-one-device": { interleavings: 1329409453, model: 396354773, campaign: 1735052920 },
  "forget-state-readback": { interleavings: -1421997553, model: -2075781636, campaign: -1583485347 },
  "release-next-phase-early": { interleavings: -1172112621, model: -497363376, campaign: 1535256058 }
}

/** A catch takes at most this many runs from its seed (search mode: from a random seed). */
const maxRuns = Number(process.env.FUZZ_FIND_SEEDS === "1" ? 5000 : 400)

const planting =
  (bug: PlantedBug): Provide =>
  (effect) =>
    Effect.provideService(effect, PlantedBug, bug)

describe("fuzz: planted bugs are caught", () => {
  for (const bug of PlantedBugs) {
    for (const fuzzer of fuzzers) {
      it(`${fuzzer.name} catches ${bug}`, async () => {
        const searching = process.env.FUZZ_FIND_SEEDS === "1"
        const seed = catchingSeeds[bug][fuzzer.name]
        const result = await fuzzer.check(makeStats(), planting(bug), {
          ...(searching ? {} : { seed }),
          numRuns: maxRuns,
          endOnFailure: true
        })
        const problem = result.report.split("\n").find((line) => line.trimStart().startsWith("- ")) ?? ""
        const name = { file: "test/fuzz/PlantedBugs.test.ts", test: `${fuzzer.name} catches ${bug}` }
        report(
          result.failed
            ? `${name.test} at run ${result.numRuns} from seed ${result.seed}:\n   ${problem.trim().slice(0, 240)}\n   ${replayCommand(name, result.seed, result.path)}`
            : `${fuzzer.name} missed ${bug} in ${result.numRuns} runs from seed ${result.seed}`
        )
        expect(
          result.failed,
          `${fuzzer.name} did not catch ${bug} from seed ${result.seed}; FUZZ_FIND_SEEDS=1 finds a new one`
        ).toBe(true)
      })
    }
  }
})
