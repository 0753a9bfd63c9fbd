/*
 * A scenario file is decoded by its own schema (ScenarioDocument) in one step, then checked with
 * the group each side becomes. The expected lines below are written from the scenario's rules
 * (see the comment in ScenarioDocument.ts): every problem names the file, the path of the value,
 * and what the value should be; unknown keys are refused by name.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { decodeScenario, loadScenario } from "../src/Scenario.js"

const gpu = (id: string, sim: Record<string, unknown> = {}) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 65536, ...sim }
})

/** The problem lines of a refused scenario, without the heading that names the file. */
const problemsOf = (doc: unknown) =>
  Effect.map(Effect.flip(decodeScenario(doc, "s.json")), (failure) => {
    expect(failure.exitCode).toBe(2)
    const [heading, ...lines] = failure.text.split("\n")
    expect(heading).toBe("s.json: not a valid scenario:")
    return lines.map((l) => l.replace(/^ {2}/, ""))
  })

describe("the scenario document's schema", () => {
  it.effect("a bad value deep in a fault plan: its path, and what a fault's nth counts from", () =>
    Effect.gen(function* () {
      const lines = yield* problemsOf({
        devices: [gpu("gpu0"), gpu("gpu1")],
        faults: { destination: { gpu1: [{ _tag: "FailArc", nth: 0 }] } }
      })
      expect(lines).toHaveLength(1)
      // nth counts the matching arcs from 1.
      expect(lines[0]).toMatch(/^faults\.destination\.gpu1\[0\]\.nth: /)
      expect(lines[0]).toContain("greater than or equal to 1")
      expect(lines[0]).toContain("got 0")
    })
  )

  it.effect("unknown keys are refused by name at every depth; a device's says which keys a device has", () =>
    Effect.gen(function* () {
      const lines = yield* problemsOf({
        devices: [{ ...gpu("gpu0"), vfioUsr: { socket: "/run/gpu0.sock" } }],
        migration: { downtimeLimit: 300 },
        simulation: { seed: 1 }
      })
      expect([...lines].sort()).toEqual([
        "devices[0].vfioUsr: unexpected key; a device has id, kind, flags, sim, vfioUser, vfio",
        "migration.downtimeLimit: unexpected key",
        "simulation: unexpected key"
      ])
    })
  )

  it.effect("a value of the wrong type: what was expected and what was there", () =>
    Effect.gen(function* () {
      expect(yield* problemsOf({ devices: [gpu("gpu0")], p2pWritesPerSecond: "fast" })).toEqual([
        'p2pWritesPerSecond: expected a number, got "fast"'
      ])
      expect(yield* problemsOf({ devices: [gpu("gpu0")], migration: { precopy: "yes" } })).toEqual([
        'migration.precopy: expected a boolean, got "yes"'
      ])
      expect(yield* problemsOf([gpu("gpu0")])).toHaveLength(1)
    })
  )

  it.effect("rules across keys: overrides name devices of the group; a kernel device names its destination", () =>
    Effect.gen(function* () {
      const lines = yield* problemsOf({
        devices: [gpu("gpu0"), { id: "nvme0", kind: "pci", vfio: { sysfsdev: "/sys/bus/pci/devices/0000:01:00.0" } }],
        destination: { sim: { gpu7: { stateSize: 4096 } } }
      })
      expect(lines).toEqual([
        'destination.sim.gpu7: unknown device "gpu7"',
        'destination.devices.nvme0: missing; a kernel device migrates into another kernel device: name it as {"vfio": {"sysfsdev": …}}'
      ])
    })
  )

  it.effect("every problem at once: the shape's, the scenario's rules and the group's, on a refused document", () =>
    Effect.gen(function* () {
      const lines = yield* problemsOf({
        devices: [gpu("gpu0"), { ...gpu("gpu0"), kind: "gpu" }],
        faults: { source: { gpu9: [] } },
        seed: "one"
      })
      expect([...lines].sort()).toEqual([
        'devices[1].id: duplicate id "gpu0", already used by devices[0]',
        'devices[1].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap',
        'faults.source.gpu9: unknown device "gpu9"',
        'seed: expected a number, got "one"'
      ])
    })
  )

  it.effect("the destination's sim overrides and each side's faults reach that side's group document only", () =>
    Effect.gen(function* () {
      const plan = [{ _tag: "FailArc", to: "STOP_COPY" }]
      const scenario = yield* decodeScenario(
        {
          devices: [gpu("gpu0", { dirtyBytesPerSecond: 10 })],
          destination: { sim: { gpu0: { stateSize: 4096 } } },
          faults: { source: { gpu0: plan } }
        },
        "s.json"
      )
      expect(scenario.documents.source).toEqual({
        devices: [
          {
            ...gpu("gpu0", { dirtyBytesPerSecond: 10 }),
            sim: { stateSize: 65536, dirtyBytesPerSecond: 10, faults: plan }
          }
        ]
      })
      expect(scenario.documents.destination).toEqual({
        devices: [gpu("gpu0", { dirtyBytesPerSecond: 10, stateSize: 4096 })]
      })
      // The defaults the comment states: seed 1, 1000 P2P writes per second.
      expect([scenario.seed, scenario.writesPerSecond]).toEqual([1, 1000])
    })
  )

  it.effect("from a file: the same lines, naming the file", () =>
    Effect.gen(function* () {
      const path = join(mkdtempSync(join(tmpdir(), "lockstep-scenario-doc-")), "scenario.json")
      writeFileSync(path, JSON.stringify({ devices: [gpu("gpu0", { pageSize: 18 })], seed: 1.5 }))
      const failure = yield* Effect.flip(loadScenario(path))
      const lines = failure.text.split("\n")
      expect(lines[0]).toBe(`${path}: not a valid scenario:`)
      // A page is between 16 bytes and 16 MiB, a multiple of 4; a seed is an integer.
      expect(lines[1]).toBe("  devices[0].sim.pageSize: expected a value that is a multiple of 4, got 18")
      expect(lines[2]).toMatch(/^ {2}seed: .*integer.*got 1\.5$/)
      expect(lines).toHaveLength(3)
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
})
