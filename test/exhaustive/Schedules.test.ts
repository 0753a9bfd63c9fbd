import { describe, expect, it } from "@effect/vitest"
import { report } from "../fuzz/Replay.js"
import { faultsTier, interruptionsTier, type TierResult } from "./Tiers.js"

/**
 * Exhaustive runs of the real executor (planner, arc runner, rollback) on devices whose every arc
 * ends as the explorer chooses (`ExploredDevice.ts`), each run judged by the oracle against the
 * reference model, the invariant checked at every device event, through every group transition
 * of the API (`apiTransitions`), for every group of one or two devices (every flag set and set of
 * edges, up to renaming: kinds and topology descriptions reach the executor only as edges, which
 * the decisions check for every kind and description): every order in which the arcs land with a
 * fault of each kind at every arc; and every order with an interruption at every step. Orders
 * that reach a group state already explored are cut there (see `Explorer.ts`). More schedules in
 * `RollbackSchedules.test.ts`.
 */
const check = (tier: () => TierResult) => {
  const r = tier()
  report(r.line)
  expect(r.problem).toBeUndefined()
}

// Exhaustive tiers run for tens of seconds on an idle machine: a loaded CI machine gets room.
describe("exhaustive: schedules of every small group", { timeout: 240_000 }, () => {
  it("1-2 devices: every order, a fault of each kind at every arc (reset policy)", () => check(faultsTier))
  it("1-2 devices: every order, an interruption at every step, arcs in flight cancelled or landing (quarantine policy)", () =>
    check(interruptionsTier))
})
