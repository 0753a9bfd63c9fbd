import { describe, expect, it } from "@effect/vitest"
import { report } from "../fuzz/Replay.js"
import { boundedSchedulesTier, rollbackFaultsTier, type TierResult, triplesSchedulesTier } from "./Tiers.js"

/**
 * Exhaustive runs of the real executor, as in `Schedules.test.ts`:
 * - two devices with every feature and an edge (one way or both): a fault at every arc and then a
 *   fault of each kind at every arc of the rollback, in every order;
 * - three devices with every feature: every set of edges in every order; and at most two arcs at
 *   once in four shapes (no edges, a chain, one writing into both, all into all).
 */
const check = (tier: () => TierResult) => {
  const r = tier()
  report(r.line)
  expect(r.problem).toBeUndefined()
}

// Exhaustive tiers run for tens of seconds on an idle machine: a loaded CI machine gets room.
describe("exhaustive: rollback faults and three devices", { timeout: 240_000 }, () => {
  it("2 devices with every feature: a fault at every arc, then one of each kind at every arc of the rollback (quarantine policy)", () =>
    check(rollbackFaultsTier))
  it("3 devices with every feature: every order of every set of edges, and two arcs at a time", () => {
    check(triplesSchedulesTier)
    check(boundedSchedulesTier)
  })
})
