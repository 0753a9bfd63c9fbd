import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Fleet from "../src/index.js"

const gpu = (i: number) => ({ id: `gpu${i}`, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 256 * 1024, arcLatencyMs: 2, dirtyBytesPerSecond: 0 } })
const fleetDoc = {
  hosts: [
    { name: "a", nicBandwidth: 16 * 1024 * 1024, capacity: 64 },
    { name: "b", nicBandwidth: 16 * 1024 * 1024, capacity: 64 },
    { name: "c", nicBandwidth: 16 * 1024 * 1024, capacity: 64 }
  ],
  vms: Array.from({ length: 4 }, (_, i) => ({ name: `vm${i}`, host: "a", group: { devices: [0, 1, 2, 3].map(gpu) } })),
  evacuate: "a"
}

it.live("evacuates a small fleet end to end", () =>
  Effect.gen(function* () {
    const state = mkdtempSync(join(tmpdir(), "f15-"))
    const fleet = yield* Fleet.decodeFleet(fleetDoc)
    for (const h of Fleet.simulatedHosts(fleet)) yield* Fleet.serveHost(fleet, state, h)
    const t0 = Date.now()
    const planned = yield* Fleet.plan(fleet, "a", state)
    const report = yield* Effect.gen(function* () {
      const started = yield* Fleet.startOrResume(fleet, planned, Date.now())
      const r = yield* Fleet.run(started.payload)
      const phases = yield* Fleet.FleetStore.phasesOf(started.payload.evacuation)
      for (const p of phases) console.log(p.vm, p.attempt, p.phase, p.startedAt - t0, (p.endedAt ?? 0) - p.startedAt)
      const vms = yield* Fleet.FleetStore.vmsOf(started.payload.evacuation)
      for (const v of vms) console.log(v.vm, v.status, (v.startedAt ?? 0) - t0, (v.finishedAt ?? 0) - t0, v.bytesSent)
      return r
    }).pipe(Effect.provide(Fleet.Runner.embedded(state)))
    console.log(JSON.stringify(report), Date.now() - t0, "ms", planned.schedule.why)
    for (const h of ["a", "b", "c"]) {
      const inv = yield* Fleet.HostControl.inventory(`${state}/s/${h}/control`)
      console.log(JSON.stringify(inv.vms.map((v) => [v.vm, v.role, v.devices.map((d) => d.state).join(","), v.violations])))
    }
    expect(report.vms.every((v) => v.migrated)).toBe(true)
  }).pipe(Effect.scoped), 120_000)
