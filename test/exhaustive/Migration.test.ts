import { describe, expect, it } from "@effect/vitest"
import type { Fault } from "@lockstep/sim"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import { report } from "../fuzz/Replay.js"
import { type MigrationGroup, type Perturbation, runMigration } from "./Migrations.js"

/**
 * Exhaustive for the migration's switchover and abort paths, on both sides: for each small group,
 * the channel cut after every message in either direction, and a fault of each kind at every arc
 * each device of either side makes in the migration (failing where it was, at its target or into
 * ERROR; hanging into its timeout, cancelled or landing anyway) and each data fault, one per run;
 * every run judged against the model (`Migrations.ts`).
 */

const gpu = (id: string, flags = 7) => ({ id, kind: "pci" as const, flags })

const groups: ReadonlyArray<{ readonly name: string; readonly group: MigrationGroup }> = [
  { name: "one GPU", group: { devices: [gpu("gpu0")], topology: "shared-iommu" } },
  {
    name: "two GPUs writing into each other",
    group: { devices: [gpu("gpu0"), gpu("gpu1")], topology: "shared-iommu" }
  },
  {
    name: "a GPU writing into a NIC without P2P or pre-copy, beside a vGPU",
    group: {
      devices: [gpu("gpu0"), gpu("nic0", 1), { id: "vgpu0", kind: "mdev", flags: 5 }],
      topology: { edges: [["gpu0", "nic0"]] }
    }
  }
]

const arcFaults = (nth: number): ReadonlyArray<ReadonlyArray<Fault>> => [
  [{ _tag: "FailArc", nth, leaveIn: "original" }],
  [{ _tag: "FailArc", nth, leaveIn: "target" }],
  [{ _tag: "FailArc", nth, leaveIn: "error" }],
  [{ _tag: "HangArc", nth }],
  [
    { _tag: "HangArc", nth },
    { _tag: "LandOnInterrupt", nth, leaveIn: "target" }
  ],
  [
    { _tag: "HangArc", nth },
    { _tag: "LandOnInterrupt", nth, leaveIn: "error" }
  ]
]

const dataFaults: ReadonlyArray<ReadonlyArray<Fault>> = [
  [{ _tag: "CorruptData" }],
  [{ _tag: "TruncateData" }],
  [{ _tag: "FailRead", nth: 2 }],
  [{ _tag: "FailWrite", nth: 2 }]
]

const run = <A>(effect: Effect.Effect<A>): Promise<A> =>
  Effect.runPromise(runOnVirtualTime(effect, { limitMs: 120_000 }).pipe(Effect.provide(TestClock.layer())))

describe("exhaustive: migrations cut at every message, with a fault at every arc of either side", () => {
  for (const { name, group } of groups) {
    it(name, async () => {
      const started = Date.now()
      const clean = await run(runMigration(group, {}))
      expect(clean.problems).toEqual([])
      expect(clean.owner).toBe("destination")
      const perturbations: Array<{ readonly what: string; readonly p: Perturbation }> = []
      for (const direction of ["source", "destination"] as const)
        for (let after = 0; after <= clean.messages[direction]; after++)
          perturbations.push({ what: `cut after ${after} ${direction} messages`, p: { cut: { direction, after } } })
      // Arcs counted from 1 from the migration's start; the destination's parking arcs come first (2).
      const arcs = { source: [1, 2, 3], destination: [3, 4, 5, 6] }
      for (const side of ["source", "destination"] as const)
        for (const d of group.devices) {
          for (const nth of arcs[side])
            for (const faults of arcFaults(nth))
              perturbations.push({
                what: `${side} ${d.id}: ${JSON.stringify(faults)}`,
                p: { [side]: { [d.id]: faults } }
              })
          if (side === "source")
            for (const faults of dataFaults)
              perturbations.push({
                what: `${side} ${d.id}: ${JSON.stringify(faults)}`,
                p: { [side]: { [d.id]: faults } }
              })
        }
      let owners = { source: 0, destination: 0 }
      for (const { what, p } of perturbations) {
        const r = await run(runMigration(group, p))
        owners = { ...owners, [r.owner]: owners[r.owner] + 1 }
        expect(r.problems, what).toEqual([])
      }
      report(
        `migrations, ${name}: ${clean.messages.source} + ${clean.messages.destination} messages, ${perturbations.length} perturbed runs (the destination owns ${owners.destination}, the source ${owners.source}) in ${((Date.now() - started) / 1000).toFixed(1)} s`
      )
    })
  }
})
