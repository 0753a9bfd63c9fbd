import { describe, expect, it } from "@effect/vitest"
import { report } from "../fuzz/Replay.js"
import { edgesTier, pairsTier, quadsTier, type TierResult, triplesTier } from "./Tiers.js"

/**
 * Exhaustive, without running anything: for every group of up to three devices (every kind, flag
 * set and topology description, once up to renaming), the coordinator's edges and blockers are the
 * model's; for every transition of every such group between two group-wide states (each device
 * adapted to what it supports), and for groups of up to two devices between any two assignments of
 * one state per device, the planner accepts exactly what the model can order (refusing with a
 * cause of the model's kind), walks every kernel path, and every order its plan allows keeps the
 * invariant. Four devices where it fits: every flag set, shared-IOMMU or none, group-wide.
 */
const check = (tier: () => TierResult) => {
  const r = tier()
  report(r.line)
  expect(r.problem).toBeUndefined()
}

// Exhaustive tiers run for tens of seconds on an idle machine: a loaded CI machine gets room.
describe("exhaustive: decisions for every small group", { timeout: 240_000 }, () => {
  it("every group of 1-3 devices of every kind and topology: the coordinator's edges and blockers are the model's", () =>
    check(edgesTier))
  it("groups of 1-2 devices: every assignment of states to every assignment, planned exactly when the model can order it", () =>
    check(pairsTier))
  it("groups of 3 devices: every group-wide transition, planned exactly when the model can order it, every order safe", () =>
    check(triplesTier))
  it("groups of 4 pci devices, every flag set, shared-IOMMU or none: every group-wide transition", () =>
    check(quadsTier))
})
