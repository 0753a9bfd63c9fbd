import { describe, expect, it } from "@effect/vitest"
import { report } from "../fuzz/Replay.js"
import { migrationGroups, migrationTier } from "./Tiers.js"

/**
 * Exhaustive for the migration's switchover and abort paths, on both sides: for each small group,
 * the channel cut after every message in either direction, and a fault of each kind at every arc
 * each device of either side makes in the migration (failing where it was, at its target or into
 * ERROR; hanging into its timeout, cancelled or landing anyway) and each data fault of the source,
 * one per run; every run judged against the model (`Migrations.ts`).
 */
// Exhaustive tiers run for tens of seconds on an idle machine: a loaded CI machine gets room.
describe("exhaustive: migrations cut at every message, with a fault at every arc of either side", {
  timeout: 240_000
}, () => {
  for (const { name, group } of migrationGroups) {
    it(name, async () => {
      const r = await migrationTier(name, group)
      report(r.line)
      expect(r.problem).toBeUndefined()
    })
  }
})
