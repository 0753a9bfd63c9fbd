import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { FleetError, InvalidFleet } from "../src/index.js"
import * as Fleet from "../src/index.js"

/** `decodeFleet` on the machine's file system (a VM's group may be a file). */
const decodeFleet = (...args: Parameters<typeof Fleet.decodeFleet>) =>
  Fleet.decodeFleet(...args).pipe(Effect.provide(NodeFileSystem.layer))

/** `loadFleetFile` on the machine's file system. */
const loadFleetFile = (path: string) => Fleet.loadFleetFile(path).pipe(Effect.provide(NodeFileSystem.layer))

const gpu = (id: string, sim: object = {}) => ({ id, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim })
const group = { devices: [gpu("g0"), gpu("g1")] }
const valid = {
  hosts: [
    { name: "a", nicBandwidth: 1000, capacity: 8 },
    { name: "b", nicBandwidth: 1000, capacity: 8, labels: { gpu: "h100" } }
  ],
  vms: [{ name: "vm1", host: "a", group }],
  evacuate: "a"
}

/** The `InvalidFleet` reason of a fleet error (any other reason fails the test). */
const invalid = (e: FleetError): InvalidFleet => {
  if (e.reason._tag !== "InvalidFleet") throw new Error(`expected InvalidFleet, got ${e.reason._tag}: ${e.message}`)
  return e.reason
}

const problems = (input: unknown) =>
  Effect.map(Effect.flip(decodeFleet(input)), (e) => invalid(e).problems.map((p) => `${p.path}: ${p.reason}`))

describe("fleet files", () => {
  it.effect("decodes a fleet: hosts, VMs with their groups, and each VM's bytes from its devices' state sizes", () =>
    Effect.gen(function* () {
      const fleet = yield* decodeFleet({
        ...valid,
        vms: [
          {
            name: "vm1",
            host: "a",
            group: { devices: [gpu("g0", { stateSize: 4096 }), gpu("g1", { stateSize: 8192 })] }
          }
        ]
      })
      expect(fleet.hosts.map((h) => [h.name, h.capacity, h.control])).toEqual([
        ["a", 8, undefined],
        ["b", 8, undefined]
      ])
      expect(fleet.vms[0]?.bytes).toBe(4096 + 8192)
      expect(fleet.vms[0]?.backend).toBe("simulated")
      expect(fleet.evacuate).toBe("a")
      // The same content gives the same digest; another one does not.
      expect((yield* decodeFleet(valid)).digest).toBe((yield* decodeFleet(valid)).digest)
      expect((yield* decodeFleet(valid)).digest).not.toBe((yield* decodeFleet({ ...valid, evacuate: "b" })).digest)
    })
  )

  it.effect("names every problem with its JSON path: shape, unknown keys, references and rules", () =>
    Effect.gen(function* () {
      const found = yield* problems({
        hosts: [
          { name: "a", nicBandwidth: -1, capacity: 8 },
          { name: "a", nicBandwidth: 10, capacity: 8, colour: "red" }
        ],
        vms: [
          { name: "vm1", host: "z", group, to: "a" },
          { name: "vm1", host: "a", group, to: "a" },
          { name: "bad name!", host: "a", group }
        ],
        evacuate: "q"
      })
      expect(found.some((p) => p.startsWith("hosts[0].nicBandwidth:"))).toBe(true)
      expect(found.some((p) => p.startsWith("hosts[1].colour:"))).toBe(true)
      expect(found.some((p) => p.startsWith("vms[2].name:"))).toBe(true)
      // Shape first: references are checked on a well-formed document.
      const refs = yield* problems({
        hosts: [
          { name: "a", nicBandwidth: 1, capacity: 8 },
          { name: "a", nicBandwidth: 1, capacity: 8 }
        ],
        vms: [
          { name: "vm1", host: "z", group },
          { name: "vm1", host: "a", group, to: "a" }
        ],
        evacuate: "q"
      })
      expect(refs).toEqual([
        "hosts[1].name: host a is listed twice",
        'vms[0].host: unknown host "z"; the fleet has a',
        "vms[1].name: VM vm1 is listed twice",
        "vms[1].to: vm1 already runs on a",
        'evacuate: unknown host "q"; the fleet has a'
      ])
    })
  )

  it.effect("refuses a group that cannot migrate safely, naming the device that blocks it", () =>
    Effect.gen(function* () {
      const blocked = {
        devices: [
          { id: "nic0", kind: "pci", flags: ["STOP_COPY"] },
          { id: "g0", kind: "pci", flags: ["STOP_COPY", "P2P"] }
        ],
        topology: { edges: [["nic0", "g0"]] }
      }
      const found = yield* problems({ ...valid, vms: [{ name: "vm1", host: "a", group: blocked }] })
      expect(found).toHaveLength(1)
      expect(found[0]).toMatch(/^vms\[0\]\.group: the group cannot migrate safely: nic0: /)
    })
  )

  it.effect("vfio-user VMs need socket templates for their host and destination; simulated ones may not have any", () =>
    Effect.gen(function* () {
      const found = yield* problems({
        ...valid,
        vms: [
          { name: "vm1", host: "a", group, backend: "vfio-user", to: "b", sockets: { a: "/run/x.sock" } },
          { name: "vm2", host: "a", group, sockets: { a: "/run/{device}.sock" } }
        ]
      })
      expect(found).toEqual([
        'vms[0].sockets.a: a socket template must contain "{device}" (the device id)',
        "vms[0].sockets: no sockets for its destination b",
        'vms[1].sockets: sockets are for "backend": "vfio-user" VMs; simulated devices are served by their host'
      ])
    })
  )

  it.effect("refuses a host that already holds more devices than its capacity", () =>
    Effect.gen(function* () {
      const found = yield* problems({
        hosts: [{ name: "a", nicBandwidth: 1, capacity: 3 }],
        vms: [
          { name: "vm1", host: "a", group },
          { name: "vm2", host: "a", group }
        ]
      })
      expect(found).toEqual(["hosts[0].capacity: a already holds 4 devices of its VMs, over its capacity 3"])
    })
  )

  it.effect("reads group files relative to the fleet file, and says which file is missing or broken", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "fleet-file-"))
      writeFileSync(join(dir, "gpu2.json"), JSON.stringify(group))
      writeFileSync(join(dir, "broken.json"), "{ not json")
      writeFileSync(
        join(dir, "fleet.json"),
        JSON.stringify({
          ...valid,
          vms: [
            { name: "vm1", host: "a", group: "gpu2.json" },
            { name: "vm2", host: "a", group: "missing.json" },
            { name: "vm3", host: "a", group: "broken.json" }
          ]
        })
      )
      const error = invalid(yield* Effect.flip(loadFleetFile(join(dir, "fleet.json"))))
      expect(error.problems.map((p) => p.path)).toEqual(["vms[1].group", "vms[2].group"])
      expect(error.problems[0]?.reason).toContain("cannot read the group file missing.json")
      expect(error.problems[1]?.reason).toBe("the group file broken.json is not valid JSON")
      const missing = yield* Effect.flip(loadFleetFile(join(dir, "nope.json")))
      expect(missing.message).toMatch(/nope\.json: no such fleet file$/)
    })
  )

  it.effect("a fleet file is decoded by its schema at once: a nested bad value, an unknown key, a wrong type", () =>
    Effect.gen(function* () {
      const dir = mkdtempSync(join(tmpdir(), "fleet-schema-"))
      const path = join(dir, "fleet.json")
      writeFileSync(
        path,
        JSON.stringify({
          hosts: [
            { name: "a", nicBandwidth: 1000, capacity: "8" },
            { name: "b", nicBandwidth: 1000, capacity: 8, colour: "red" }
          ],
          vms: [{ name: "vm1", host: "a", group, backend: "vfio-user", sockets: { a: "" } }],
          schedule: { concurrency: 0 }
        })
      )
      const error = yield* Effect.flip(loadFleetFile(path))
      const lines = error.message.split("\n")
      // Every line names the file, then the path of the value.
      expect(lines.every((l) => l.startsWith(`${path}: `))).toBe(true)
      const at = (p: string) => lines.find((l) => l.startsWith(`${path}: ${p}: `))?.slice(path.length + p.length + 4)
      // capacity is a count of devices: a number, not a string.
      expect(at("hosts[0].capacity")).toBe('expected a number, got "8"')
      // The keys of a host are name, nicBandwidth, capacity, labels and control.
      expect(at("hosts[1].colour")).toBe(
        "unknown key (misspelt?); a host has name, nicBandwidth, capacity, labels, control"
      )
      // A socket template names a file: it cannot be empty.
      expect(at("vms[0].sockets.a")).toContain('got ""')
      // A fixed concurrency runs at least one migration at a time.
      expect(at("schedule.concurrency")).toContain("greater than or equal to 1")
      expect(at("schedule.concurrency")).toContain("got 0")
    })
  )

  it.effect("the rules across keys and the VMs' groups are checked together, after the shape", () =>
    Effect.gen(function* () {
      const found = yield* problems({
        ...valid,
        hosts: [...valid.hosts, { name: "a", nicBandwidth: 1, capacity: 1 }],
        vms: [{ name: "vm1", host: "a", group: { devices: [{ ...gpu("g0"), kind: "gpu" }] } }]
      })
      expect(found).toHaveLength(2)
      expect(found[0]).toBe("hosts[2].name: host a is listed twice")
      // The group's own problem, under the VM's group key, with the group's path.
      expect(found[1]).toMatch(/^vms\[0\]\.group: devices\[0\]\.kind: unknown kind "gpu"/)
    })
  )
})
