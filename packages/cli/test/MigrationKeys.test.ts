/*
 * A scenario names the two concurrency limits apart: "ioConcurrency" (devices read or written at
 * once) and "arcConcurrency" (arcs in flight at once in a group transition). The old
 * "concurrency" limited only the first while reading like either; it is refused with a message
 * naming both keys, never silently mapped to one of them.
 */
import { describe, expect, it } from "@effect/vitest"
import type { MigrationEvent } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { makePair, migrate, successOf, threeGpus } from "../../migration/test/Harness.js"
import { decodeScenario } from "../src/Scenario.js"
import { destinationOptionsOf, sourceOptionsOf } from "../src/ScenarioOptions.js"

const withMigration = (migration: Record<string, unknown>) => ({ ...threeGpus, migration })

/** The most arcs a side had in flight at once, from its group-transition events. */
const mostArcsInFlight = (events: ReadonlyArray<MigrationEvent>, side: "source" | "destination"): number => {
  let now = 0
  let most = 0
  for (const e of events) {
    if (e._tag !== "GroupTransition" || e.side !== side) continue
    if (e.event._tag === "ArcStarted") most = Math.max(most, ++now)
    if (e.event._tag === "ArcDone" || e.event._tag === "ArcFailed") now -= 1
  }
  return most
}

describe("the scenario's concurrency keys", () => {
  it.effect("ioConcurrency and arcConcurrency reach both sides' options", () =>
    Effect.gen(function* () {
      const scenario = yield* decodeScenario(withMigration({ ioConcurrency: 2, arcConcurrency: 1 }), "s.json")
      expect(sourceOptionsOf(scenario.migration)).toMatchObject({ ioConcurrency: 2, arcConcurrency: 1 })
      expect(destinationOptionsOf(scenario.migration)).toMatchObject({ ioConcurrency: 2, arcConcurrency: 1 })
    })
  )

  it.effect("arcConcurrency 1 runs one arc at a time on each side; without it the arcs overlap", () =>
    Effect.gen(function* () {
      for (const [migration, one] of [
        [{ arcConcurrency: 1 }, true],
        [{}, false]
      ] as const) {
        const scenario = yield* decodeScenario(withMigration(migration), "s.json")
        const pair = yield* runOnVirtualTime(makePair(threeGpus))
        const out = yield* runOnVirtualTime(
          migrate(pair, {
            source: sourceOptionsOf(scenario.migration),
            destination: destinationOptionsOf(scenario.migration)
          })
        )
        yield* successOf(out.source)
        for (const side of ["source", "destination"] as const) {
          const most = mostArcsInFlight(out.events, side)
          if (one) expect(most).toBe(1)
          else expect(most).toBeGreaterThan(1)
        }
      }
    })
  )

  it.effect("the old concurrency key is refused, naming the two keys that replace it", () =>
    Effect.gen(function* () {
      const refused = yield* Effect.flip(decodeScenario(withMigration({ concurrency: 2 }), "s.json"))
      expect(refused.exitCode).toBe(2)
      expect(refused.text).toContain("s.json: not a valid scenario:\n  migration.concurrency: ")
      expect(refused.text).toContain('"ioConcurrency"')
      expect(refused.text).toContain('"arcConcurrency"')
    })
  )
})
