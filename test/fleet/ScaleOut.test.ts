import { describe, expect, it } from "@effect/vitest"
import { FleetStore, historyOf, Report, Runner, vmKeyOf } from "@lockstep/fleet"
import { Effect } from "effect"
import {
  fleetDir,
  inventories,
  kill,
  lockstep,
  placementOf,
  type Run,
  remove,
  run,
  startHosts,
  violations,
  watch
} from "./Harness.js"
import { startPostgres, type TestPostgres } from "./Postgres.js"

/*
 * Scale-out: runners sharing a real Postgres server (started here, on loopback). Runner r2
 * starts the evacuation alone, so it holds every shard; r1 joins once the migrations are under
 * way and takes half of them over; then r2 is killed with SIGKILL. Its shards move to r1 (once
 * its locks expire: the tuned timings make that seconds, not the 38 s of the defaults) and r1
 * finishes the evacuation: every VM ends migrated or rolled back, with no P2P violation.
 *
 * Both runners run in a hostile environment: HOST, PORT and the other variables the cluster's
 * `ShardingConfig.layerFromEnv` would read hold garbage, and so do the PG* variables. The
 * fleet sets its configuration in code, so none of it may matter.
 */

const hosts = ["a", "b", "c"]
const gpu = (i: number) => ({
  id: `g${i}`,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 256 * 1024, arcLatencyMs: 3, dirtyBytesPerSecond: 4096 }
})
const fleetDoc = {
  hosts: hosts.map((name) => ({ name, nicBandwidth: 1024 * 1024, capacity: 32 })),
  vms: Array.from({ length: 4 }, (_, i) => ({ name: `vm${i}`, host: "a", group: { devices: [0, 1, 2, 3].map(gpu) } })),
  evacuate: "a",
  migration: { downtimeLimitMs: 500, maxRounds: 4 },
  simulation: { seed: 11, p2pWritesPerSecond: 2 }
}

const hostile = {
  HOST: "256.256.256.256",
  PORT: "abc",
  SHARDS_PER_GROUP: "many",
  ENTITY_MESSAGE_POLL_INTERVAL: "often",
  RUNNER_ADDRESS: "nowhere:0",
  PGHOST: "nowhere.invalid",
  PGPORT: "1",
  PGUSER: "nobody",
  PGPASSWORD: "wrong",
  PGDATABASE: "none"
}

describe("runners sharing Postgres", () => {
  it("a killed runner's shards move to the other, which completes the evacuation", async () => {
    const pg: TestPostgres = await startPostgres()
    const f = fleetDir(fleetDoc)
    const hostsRun: Run = await startHosts(f, hosts)
    const runners: Array<Run> = []
    try {
      // r2 alone first: every shard is its own. r1 joins once the first VM is being pre-copied.
      let joined: () => void = () => {}
      const migrating = new Promise<void>((resolve) => {
        joined = resolve
      })
      const stopWatching = await watch(f, "a", (e) => {
        if (e.event === "ArcStarted" && e.to === "PRE_COPY") joined()
      })
      const r2 = lockstep(
        [
          "fleet",
          "evacuate",
          f.file,
          "--state",
          f.state,
          "--postgres",
          pg.url,
          "--runner",
          "r2",
          "--json",
          "--keep-hosts"
        ],
        hostile
      )
      runners.push(r2)
      await migrating
      await stopWatching()
      const r1 = lockstep(["fleet", "runner", "--postgres", pg.url, "--name", "r1"], hostile)
      runners.push(r1)
      // Let r1 take its share, then kill r2 in the middle of the evacuation.
      await new Promise((r) => setTimeout(r, 2_500))
      const storage = Runner.storageOnly({ url: pg.url })
      const before = await run(Report.view().pipe(Effect.provide(storage)))
      expect(before?.vms.filter((v) => v.status === "migrated" || v.status === "rolled-back").length ?? 0).toBeLessThan(
        4
      )
      const killedAt = Date.now()
      await kill(r2)

      // r1 alone finishes it.
      let view = before
      const deadline = Date.now() + 90_000
      while (view?.evacuation.status !== "done" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 500))
        view = await run(Report.view().pipe(Effect.provide(storage)))
      }
      process.stdout.write(
        `${`evacuation finished ${((Date.now() - killedAt) / 1000).toFixed(1)} s after r2 was killed`}\n`
      )
      expect(view?.evacuation.status, JSON.stringify(view?.vms)).toBe("done")
      expect(r1.child.exitCode, (await Promise.race([r1.done, Promise.resolve(undefined)]))?.stderr).toBeNull()

      const invs = await inventories(f, hosts)
      expect(violations(invs)).toEqual([])
      const vms = view?.vms ?? []
      expect(vms.map((v) => v.vm).sort()).toEqual(["vm0", "vm1", "vm2", "vm3"])
      const histories = await run(
        Effect.forEach(vms, (v) => historyOf(vmKeyOf(v.evacuation, v.vm))).pipe(Effect.provide(storage))
      )
      vms.forEach((v, i) => {
        const placed = placementOf(invs, v.vm, v.source, v.destination)
        expect(["migrated", "rolled-back"], `${v.vm}: ${placed}`).toContain(placed)
        expect(v.status, v.vm).toBe(placed)
        const commits = (histories[i] ?? []).filter((c) => c.status === "committed")
        expect(commits.length, v.vm).toBe(placed === "migrated" ? 1 : 0)
      })
      expect(
        await run(
          FleetStore.evacuations.pipe(
            Effect.provide(storage),
            Effect.map((e) => e.length)
          )
        )
      ).toBe(1)
    } finally {
      for (const r of runners) await kill(r)
      await kill(hostsRun)
      await pg.stop()
      remove(f)
    }
  }, 180_000)
})
