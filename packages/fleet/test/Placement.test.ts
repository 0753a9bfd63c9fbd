import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as fc from "fast-check"
import * as Fleet from "../src/index.js"
import { place } from "../src/index.js"

/** `decodeFleet` on the machine's file system (a VM's group may be a file). */
const decodeFleet = (...args: Parameters<typeof Fleet.decodeFleet>) =>
  Fleet.decodeFleet(...args).pipe(Effect.provide(NodeFileSystem.layer))

const gpu = (i: number, stateSize = 1024) => ({
  id: `g${i}`,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize }
})
const vm = (name: string, devices: number, extra: object = {}, stateSize = 1024) => ({
  name,
  host: "a",
  group: { devices: Array.from({ length: devices }, (_, i) => gpu(i, stateSize)) },
  ...extra
})

describe("placement", () => {
  it.effect("a VM that names its destination goes there; the others go where the NICs finish soonest", () =>
    Effect.gen(function* () {
      const fleet = yield* decodeFleet({
        hosts: [
          { name: "a", nicBandwidth: 100, capacity: 64 },
          { name: "b", nicBandwidth: 100, capacity: 64 },
          { name: "c", nicBandwidth: 300, capacity: 64 }
        ],
        vms: [vm("big", 2, {}, 3000), vm("mid", 2, {}, 1000), vm("small", 2, {}, 500), vm("pinned", 1, { to: "b" })]
      })
      const placed = place(fleet, "a")
      expect(Result.isSuccess(placed)).toBe(true)
      if (Result.isFailure(placed)) return
      const where = Object.fromEntries(placed.success.map((p) => [p.vm.name, p.destination]))
      // pinned first: b holds 1024 bytes. Then largest first, each to the lowest (bytes + its own) / NIC:
      // big (6000): b 7024/100 = 70 vs c 6000/300 = 20 → c; mid (2000): b 30.2 vs c 26.7 → c;
      // small (1000): b 20.2 vs c 30 → b.
      expect(where).toEqual({ pinned: "b", big: "c", mid: "c", small: "b" })
    })
  )

  it.effect("a VM with no fitting host is refused before anything moves, each host with its reason", () =>
    Effect.gen(function* () {
      const fleet = yield* decodeFleet({
        hosts: [
          { name: "a", nicBandwidth: 100, capacity: 64 },
          { name: "b", nicBandwidth: 100, capacity: 3 },
          { name: "c", nicBandwidth: 100, capacity: 64, labels: { gpu: "a100" } }
        ],
        vms: [vm("vm1", 4, { requires: { gpu: "h100" } })]
      })
      const placed = place(fleet, "a")
      expect(Result.isFailure(placed)).toBe(true)
      if (Result.isSuccess(placed)) return
      expect(placed.failure.reason._tag).toBe("NoCapacity")
      if (placed.failure.reason._tag !== "NoCapacity") return
      expect(placed.failure.reason.candidates).toEqual([
        { host: "a", reason: "it is the host being evacuated" },
        { host: "b", reason: "lacks gpu=h100" },
        { host: "c", reason: "lacks gpu=h100" }
      ])
      expect(placed.failure.message).toContain("vm1 (4 devices) fits on no destination")
    })
  )

  it.effect("a destination that is full is refused with its free devices", () =>
    Effect.gen(function* () {
      const fleet = yield* decodeFleet({
        hosts: [
          { name: "a", nicBandwidth: 100, capacity: 64 },
          { name: "b", nicBandwidth: 100, capacity: 6 }
        ],
        vms: [vm("vm1", 4), vm("vm2", 4)]
      })
      const placed = place(fleet, "a")
      if (Result.isSuccess(placed)) return expect.fail("placed two 4-device VMs in 6 devices")
      const refused = placed.failure.reason
      if (refused._tag !== "NoCapacity") return expect.fail(`expected NoCapacity, got ${refused._tag}`)
      expect(refused.vm).toBe("vm2")
      expect(refused.candidates).toContainEqual({ host: "b", reason: "2 free devices" })
    })
  )

  it("never places more devices on a host than its capacity, counting the VMs already there", () =>
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 3 }),
        (sizes, capacities, resident) => {
          const doc = {
            hosts: [
              { name: "a", nicBandwidth: 10, capacity: 200 },
              ...capacities.map((capacity, i) => ({
                name: `h${i}`,
                nicBandwidth: 10 + i,
                capacity: capacity + resident
              }))
            ],
            vms: [
              ...sizes.map((n, i) => vm(`vm${i}`, n)),
              ...capacities.map((_, i) => ({ ...vm(`r${i}`, resident || 1), host: `h${i}` }))
            ].filter((v) => resident > 0 || !v.name.startsWith("r"))
          }
          const fleet = Effect.runSync(decodeFleet(doc))
          const placed = place(fleet, "a")
          if (Result.isFailure(placed)) return
          for (const [i, capacity] of capacities.entries()) {
            const used =
              Math.max(resident, 0) +
              placed.success.filter((p) => p.destination === `h${i}`).reduce((n, p) => n + p.vm.group.devices.length, 0)
            expect(used).toBeLessThanOrEqual(capacity + resident)
          }
          expect(placed.success.map((p) => p.vm.name).sort()).toEqual(sizes.map((_, i) => `vm${i}`).sort())
        }
      ),
      { numRuns: 200 }
    ))
})
