import { describe, expect, it } from "@effect/vitest"
import { report } from "../fuzz/Replay.js"
import {
  boundedSchedulesTier,
  faultsTier,
  interruptionsTier,
  rollbackFaultsTier,
  type TierResult,
  triplesSchedulesTier
} from "./Tiers.js"

/**
 * Exhaustive runs of the real executor (planner, arc runner, rollback) on devices whose every arc
 * ends as the explorer chooses (`ExploredDevice.ts`), each run judged by the oracle against the
 * reference model, the invariant checked at every device event, through every group transition
 * of the API (`apiTransitions`):
 * - every group of one or two devices (every flag set and set of edges, up to renaming: kinds and
 *   topology descriptions reach the executor only as edges, which the decisions check for every
 *   kind and description): every order in which the arcs land with a fault of each kind at every
 *   arc; and every order with an interruption at every step;
 * - two devices with every feature and an edge (one way or both): a fault at every arc and then a
 *   fault of each kind at every arc of the rollback, in every order;
 * - three devices with every feature, every set of edges: every order, unbounded and two at a time.
 * Orders that reach a group state already explored are cut there (see `Explorer.ts`).
 */
const check = (tier: () => TierResult) => {
  const r = tier()
  report(r.line)
  expect(r.problem).toBeUndefined()
}

describe("exhaustive: schedules of every small group", () => {
  it("1-2 devices: every order, a fault of each kind at every arc (reset policy)", () => check(faultsTier))
  it("1-2 devices: every order, an interruption at every step, arcs in flight cancelled or landing (quarantine policy)", () =>
    check(interruptionsTier))
  it("2 devices with every feature: a fault at every arc, then one of each kind at every arc of the rollback (quarantine policy)", () =>
    check(rollbackFaultsTier))
  it("3 devices with every feature, every set of edges: every order, unbounded and two arcs at a time", () => {
    check(triplesSchedulesTier)
    check(boundedSchedulesTier)
  })
})
