import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, stop } from "@lockstep/coordinator"
import { type Flag, flagNames, flagsOf } from "@lockstep/fsm"
import { simulateGroup } from "@lockstep/sim"
import { serve } from "@lockstep/vfio-user"
import { Effect } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import * as Fleet from "../src/index.js"

/** `decodeFleet` on the machine's file system (a VM's group may be a file). */
const decodeFleet = (...args: Parameters<typeof Fleet.decodeFleet>) =>
  Fleet.decodeFleet(...args).pipe(Effect.provide(NodeFileSystem.layer))

/*
 * Evacuations in one process: the simulated hosts served here (their fabrics checking every
 * VM), the embedded runner on SQLite in a temporary directory. What the issue asks before
 * anything moves, and of a VM whose migration fails, is checked against the hosts' devices.
 */

const gpu = (i: number, faults: ReadonlyArray<object> = []) => ({
  id: `g${i}`,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 64 * 1024, arcLatencyMs: 2, dirtyBytesPerSecond: 0, faults }
})
const hostsOf = (extra: object = {}) => [
  { name: "a", nicBandwidth: 8 * 1024 * 1024, capacity: 32 },
  { name: "b", nicBandwidth: 8 * 1024 * 1024, capacity: 32 },
  { name: "c", nicBandwidth: 8 * 1024 * 1024, capacity: 32, ...extra }
]
const vmOf = (name: string, faults: ReadonlyArray<object> = []) => ({
  name,
  host: "a",
  group: { devices: [gpu(0), gpu(1, faults), gpu(2)] }
})

const stateDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lfe-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** The simulated hosts of `fleet`, served in this process until the scope closes. */
const serveAll = (fleet: Fleet.Fleet, state: string) =>
  Effect.forEach(Fleet.simulatedHosts(fleet), (h) => Fleet.serveHost(fleet, state, h))

const inventories = (fleet: Fleet.Fleet, state: string) =>
  Effect.forEach(Fleet.simulatedHosts(fleet), (h) =>
    Fleet.HostControl.inventory(Fleet.StateDirectory.controlSocket(fleet, state, h))
  )

const statesOf = (invs: ReadonlyArray<Fleet.HostControl.HostInventory>, host: string, vm: string) =>
  invs
    .find((i) => i.host === host)
    ?.vms.find((v) => v.vm === vm)
    ?.devices.map((d) => d.state)

const evacuate = (fleet: Fleet.Fleet, state: string) =>
  Effect.gen(function* () {
    const planned = yield* Fleet.plan(fleet, "a", state)
    return yield* Effect.gen(function* () {
      const started = yield* Fleet.startOrResume(
        fleet,
        planned,
        Date.now(),
        Fleet.checkSourcesRun(fleet, state, planned)
      )
      const report = yield* Fleet.run(started.payload)
      const view = yield* Fleet.Report.view(started.payload.evacuation)
      return { report, view, started }
    }).pipe(Effect.provide(Fleet.Runner.embedded(state)))
  })

describe("evacuating a host", () => {
  it.live(
    "moves every VM: destinations RUNNING, sources halted, each device verified against its source, no P2P violation",
    () =>
      Effect.gen(function* () {
        const state = yield* stateDir
        const fleet = yield* decodeFleet({ hosts: hostsOf(), vms: ["vm1", "vm2", "vm3"].map((n) => vmOf(n)) })
        yield* serveAll(fleet, state)
        const { report, view } = yield* evacuate(fleet, state)
        expect(report.vms.map((v) => [v.vm, v.migrated])).toEqual([
          ["vm1", true],
          ["vm2", true],
          ["vm3", true]
        ])
        const invs = yield* inventories(fleet, state)
        for (const v of report.vms) {
          expect(statesOf(invs, "a", v.vm), v.vm).toEqual(["STOP_COPY", "STOP_COPY", "STOP_COPY"])
          expect(statesOf(invs, v.destination, v.vm), v.vm).toEqual(["RUNNING", "RUNNING", "RUNNING"])
        }
        expect(invs.flatMap((i) => i.vms).reduce((n, v) => n + v.violations + v.corruptingWrites, 0)).toBe(0)
        // Each VM's migration went through the migration package's phases, in order.
        const phases = (view?.phases ?? []).filter((p) => p.vm === "vm1").map((p) => p.phase)
        expect(phases).toEqual([
          "handshake",
          "prepare",
          "precopy",
          "switchover",
          "drain",
          "validate",
          "commit",
          "resume"
        ])
        expect(view?.evacuation.status).toBe("done")
        // Asked again, nothing moves: the sources do not run at home because this evacuation moved
        // them, so the run reads that evacuation back (a run killed between the end and its report
        // gets its report this way) instead of starting another.
        const again = yield* evacuate(fleet, state)
        expect(again.view?.evacuation.id).toBe(view?.evacuation.id)
        expect(again.started.finishedAt).toBe(view?.evacuation.finishedAt)
        expect(again.report.vms.map((v) => [v.vm, v.migrated])).toEqual(report.vms.map((v) => [v.vm, v.migrated]))
        const recorded = yield* Fleet.FleetStore.evacuations.pipe(Effect.provide(Fleet.Runner.storageOnly({ state })))
        expect(recorded.map((e) => e.id)).toEqual([view?.evacuation.id])
        const after = yield* inventories(fleet, state)
        for (const v of report.vms) {
          expect(statesOf(after, "a", v.vm), v.vm).toEqual(["STOP_COPY", "STOP_COPY", "STOP_COPY"])
          expect(statesOf(after, v.destination, v.vm), v.vm).toEqual(["RUNNING", "RUNNING", "RUNNING"])
        }
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a VM whose switchover fails is rolled back: its source runs, its shell is parked and released; the others move",
    () =>
      Effect.gen(function* () {
        const state = yield* stateDir
        const failing = vmOf("bad", [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY" }])
        const fleet = yield* decodeFleet({ hosts: hostsOf(), vms: [vmOf("good"), { ...failing, to: "b" }] })
        yield* serveAll(fleet, state)
        const { report, view } = yield* evacuate(fleet, state)
        const bad = report.vms.find((v) => v.vm === "bad")
        expect(bad).toMatchObject({ migrated: false, recovered: true })
        expect(bad?.reason).toContain("g1: PRE_COPY_P2P → STOP_COPY")
        expect(report.vms.find((v) => v.vm === "good")?.migrated).toBe(true)
        const invs = yield* inventories(fleet, state)
        expect(statesOf(invs, "a", "bad")).toEqual(["RUNNING", "RUNNING", "RUNNING"])
        // Released: the shell is gone from b, and with it the reservation.
        expect(statesOf(invs, "b", "bad")).toBeUndefined()
        expect(view?.vms.find((v) => v.vm === "bad")?.status).toBe("rolled-back")
        expect(invs.flatMap((i) => i.vms).reduce((n, v) => n + v.violations + v.corruptingWrites, 0)).toBe(0)
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a vfio-user VM (devices served by someone else, at the fleet file's sockets) moves like a simulated one",
    () =>
      Effect.gen(function* () {
        const state = yield* stateDir
        const group = {
          devices: [0, 1].map((i) => ({ id: `n${i}`, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"] }))
        }
        // The VM's devices on both hosts: simulated devices behind a fabric, served over vfio-user
        // at the sockets the fleet file names; the destination's wait parked in STOP.
        const sides = yield* Effect.forEach(["a", "b"], (host) =>
          Effect.gen(function* () {
            const sim = yield* simulateGroup(yield* decodeGroup(group), {
              seed: host === "a" ? 1 : 2,
              defaults: { stateSize: 32 * 1024, arcLatencyMs: 1, dirtyBytesPerSecond: 0 }
            })
            if (host === "b") yield* stop(sim)
            for (const [id, device] of sim.devices) yield* serve({ path: join(state, `${host}-${id}.sock`), device })
            return sim
          })
        )
        const fleet = yield* decodeFleet({
          hosts: hostsOf(),
          vms: [
            {
              name: "nvme",
              host: "a",
              group,
              backend: "vfio-user",
              to: "b",
              sockets: { a: join(state, "a-{device}.sock"), b: join(state, "b-{device}.sock") }
            }
          ]
        })
        yield* serveAll(fleet, state)
        const { report } = yield* evacuate(fleet, state)
        expect(report.vms).toMatchObject([{ vm: "nvme", destination: "b", migrated: true }])
        const [source, destination] = sides
        if (source === undefined || destination === undefined) return expect.fail("no devices")
        for (const id of ["n0", "n1"]) {
          const s = source.devices.get(id)
          const d = destination.devices.get(id)
          if (s === undefined || d === undefined) return expect.fail(id)
          expect(yield* s.getState).toBe("STOP_COPY")
          expect(yield* d.getState).toBe("RUNNING")
        }
        yield* source.fabric.assertNoViolations
        yield* destination.fabric.assertNoViolations
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a destination whose devices do not match the VM's (flags) is refused at the reservation: named, nothing moved",
    () =>
      Effect.gen(function* () {
        const state = yield* stateDir
        const declared: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]
        // The destination's servers offer the same devices without PRE_COPY: a shell the VM cannot land in.
        const offered: ReadonlyArray<Flag> = ["STOP_COPY", "P2P"]
        const deviceOf = (id: string, flags: ReadonlyArray<Flag>) => ({ id, kind: "pci", flags })
        const group = { devices: ["n0", "n1"].map((id) => deviceOf(id, declared)) }
        const sides = yield* Effect.forEach(["a", "b"], (host) =>
          Effect.gen(function* () {
            const devices = host === "a" ? group.devices : group.devices.map((d) => deviceOf(d.id, offered))
            const sim = yield* simulateGroup(yield* decodeGroup({ devices }), {
              seed: host === "a" ? 1 : 2,
              defaults: { stateSize: 32 * 1024, arcLatencyMs: 1, dirtyBytesPerSecond: 0 }
            })
            if (host === "b") yield* stop(sim)
            const events: Array<string> = []
            for (const [id, device] of sim.devices) {
              device.observe((event) => events.push(`${id} ${event._tag}`))
              yield* serve({ path: join(state, `${host}-${id}.sock`), device })
            }
            return { sim, events }
          })
        )
        const fleet = yield* decodeFleet({
          hosts: hostsOf(),
          vms: [
            {
              name: "nvme",
              host: "a",
              group,
              backend: "vfio-user",
              to: "b",
              sockets: { a: join(state, "a-{device}.sock"), b: join(state, "b-{device}.sock") }
            }
          ]
        })
        yield* serveAll(fleet, state)
        const [source, destination] = sides
        if (source === undefined || destination === undefined) return expect.fail("no devices")
        const destinationBefore = yield* Effect.forEach([...destination.sim.devices.values()], (d) => d.getState)
        const { report, view } = yield* evacuate(fleet, state)
        const nvme = report.vms.find((v) => v.vm === "nvme")
        expect(nvme).toMatchObject({ vm: "nvme", destination: "b", migrated: false, recovered: true })
        // The refusal names the host, the VM, the device and both flag sets, in the canonical order.
        const names = (flags: ReadonlyArray<Flag>) => flagNames(flagsOf(flags)).join(",")
        expect(nvme?.reason).toContain("b refused to reserve room for nvme")
        expect(nvme?.reason).toMatch(
          new RegExp(
            `device n[01] does not match: declares ${names(declared)} but the vfio-user server at .*b-n[01]\\.sock reports ${names(offered)}`
          )
        )
        expect(view?.vms.find((v) => v.vm === "nvme")?.status).toBe("rolled-back")
        // Nothing moved: no device on either side took an arc, the source runs, the shell stays parked.
        expect(source.events).toEqual([])
        expect(destination.events).toEqual([])
        expect(yield* Effect.forEach([...source.sim.devices.values()], (d) => d.getState)).toEqual([
          "RUNNING",
          "RUNNING"
        ])
        expect(yield* Effect.forEach([...destination.sim.devices.values()], (d) => d.getState)).toEqual(
          destinationBefore
        )
        // The refused reservation holds no capacity on b.
        const reserved = yield* Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          return yield* sql<{ readonly vm_key: string }>`SELECT vm_key FROM fleet_reservations`
        }).pipe(Effect.provide(Fleet.Runner.storageOnly({ state })))
        expect(reserved).toEqual([])
        yield* source.sim.fabric.assertNoViolations
        yield* destination.sim.fabric.assertNoViolations
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("an unreachable host stops the evacuation before anything moves", () =>
    Effect.gen(function* () {
      const state = yield* stateDir
      const fleet = yield* decodeFleet({
        hosts: hostsOf({ control: join(state, "nobody-listens") }),
        vms: [vmOf("vm1"), { ...vmOf("vm2"), to: "c" }]
      })
      yield* serveAll(fleet, state)
      const error = yield* Effect.flip(Fleet.plan(fleet, "a", state))
      expect(error.reason._tag).toBe("HostUnreachable")
      expect(error.message).toContain("host c is unreachable")
      expect(error.message).toContain("nothing listens there")
      // Paths are shown relative to the working directory, never absolute.
      expect(error.message).not.toContain(` ${state}`)
      const invs = yield* inventories(fleet, state)
      expect(
        invs.map((i) => [i.host, i.vms.map((v) => `${v.vm}:${v.role}:${v.devices.map((d) => d.state).join(",")}`)])
      ).toEqual([
        ["a", ["vm1:home:RUNNING,RUNNING,RUNNING", "vm2:home:RUNNING,RUNNING,RUNNING"]],
        ["b", []]
      ])
    }).pipe(Effect.scoped)
  )

  it.live("a destination without capacity stops the evacuation before anything moves", () =>
    Effect.gen(function* () {
      const state = yield* stateDir
      const fleet = yield* decodeFleet({
        hosts: [
          { name: "a", nicBandwidth: 1, capacity: 32 },
          { name: "b", nicBandwidth: 1, capacity: 4 }
        ],
        vms: [vmOf("vm1"), vmOf("vm2")]
      })
      const error = yield* Effect.flip(Fleet.plan(fleet, "a", state))
      expect(error.reason._tag).toBe("NoCapacity")
      expect(error.message).toBe(
        'vm2 (3 devices) fits on no destination (a: it is the host being evacuated; b: 1 free devices); add capacity or free some, or name a destination with "to"'
      )
    })
  )
})
