import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as Fleet from "../src/index.js"
import { costOf, orchestrationAllowanceMs, place, schedule } from "../src/index.js"

/** `decodeFleet` on the machine's file system (a VM's group may be a file). */
const decodeFleet = (...args: Parameters<typeof Fleet.decodeFleet>) =>
  Fleet.decodeFleet(...args).pipe(Effect.provide(NodeFileSystem.layer))

const MiB = 1024 * 1024
const gpu = (i: number, stateSize: number, arcLatencyMs: number) => ({
  id: `g${i}`,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize, arcLatencyMs }
})
const fleetOf = (nic: number, vms: ReadonlyArray<{ name: string; devices: number; stateSize: number }>, L = 10) =>
  decodeFleet({
    hosts: [
      { name: "a", nicBandwidth: nic, capacity: 256 },
      { name: "b", nicBandwidth: nic, capacity: 256 }
    ],
    vms: vms.map((v) => ({
      name: v.name,
      host: "a",
      group: { devices: Array.from({ length: v.devices }, (_, i) => gpu(i, v.stateSize, L)) }
    }))
  })

describe("the evacuation schedule", () => {
  it.effect("a VM's cost follows the kernel paths its devices take (DESIGN.md §1, all three flags)", () =>
    Effect.gen(function* () {
      const L = 7
      const fleet = yield* fleetOf(2 * MiB, [{ name: "vm", devices: 4, stateSize: MiB }], L)
      const vm = fleet.vms[0]
      if (vm === undefined) return expect.fail("no VM")
      const cost = costOf(fleet, vm, "b")
      // RUNNING → PRE_COPY is one arc, STOP → RESUMING one (the two sides prepare in parallel);
      // PRE_COPY → PRE_COPY_P2P → STOP_COPY two; RESUMING → STOP one and STOP → RUNNING_P2P → RUNNING two.
      expect(cost).toEqual({ vm: "vm", bytes: 4 * MiB, streamMs: 2000, headMs: L, switchoverMs: 2 * L, tailMs: 3 * L })
    })
  )

  it.effect("starts the largest VMs first", () =>
    Effect.gen(function* () {
      const fleet = yield* fleetOf(MiB, [
        { name: "small", devices: 2, stateSize: MiB },
        { name: "big", devices: 8, stateSize: MiB },
        { name: "mid", devices: 4, stateSize: MiB },
        { name: "mid2", devices: 4, stateSize: MiB }
      ])
      const placed = place(fleet, "a")
      if (Result.isFailure(placed)) return expect.fail(placed.failure.message)
      expect(schedule(fleet, placed.success).vms.map((v) => v.vm.name)).toEqual(["big", "mid", "mid2", "small"])
    })
  )

  it.effect("runs 1 + ⌈gap ÷ stream⌉ at once: enough for the others to stream while one is in its arcs", () =>
    Effect.gen(function* () {
      const L = 10
      const vms = Array.from({ length: 6 }, (_, i) => ({ name: `vm${i}`, devices: 4, stateSize: MiB }))
      const gap = 6 * L + orchestrationAllowanceMs
      for (const nic of [MiB, 64 * MiB, 400 * MiB]) {
        const fleet = yield* fleetOf(nic, vms, L)
        const placed = place(fleet, "a")
        if (Result.isFailure(placed)) return expect.fail(placed.failure.message)
        const stream = ((4 * MiB) / nic) * 1000
        expect(schedule(fleet, placed.success).concurrency, `NIC ${nic}`).toBe(Math.min(6, 1 + Math.ceil(gap / stream)))
      }
      const pinned = yield* decodeFleet({
        hosts: [
          { name: "a", nicBandwidth: 1, capacity: 9 },
          { name: "b", nicBandwidth: 1, capacity: 9 }
        ],
        vms: [{ name: "x", host: "a", group: { devices: [gpu(0, 1, 1)] } }],
        schedule: { concurrency: 5 }
      })
      const placed = place(pinned, "a")
      if (Result.isFailure(placed)) return expect.fail(placed.failure.message)
      expect(schedule(pinned, placed.success).concurrency).toBe(1)
    })
  )
})
