import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, type GroupRuntime, stop } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { type Flag, flagsOf } from "@lockstep/fsm"
import {
  Journal,
  MigrationFailed,
  migrateDestination,
  migrateSource,
  PessimisticStopCopyLength,
  type SourceSummary
} from "@lockstep/migration"
import { compareMemory, makeSimDevice, type SimDevice, type SimDeviceConfig, simulateGroup } from "@lockstep/sim"
import { MemoryTransport } from "@lockstep/stream"
import { attachVfioUserDevices, connect } from "@lockstep/vfio-user"
import { Cause, Deferred, Effect, Exit, Scope } from "effect"
import { type LibvfioUserLike, libvfioUserLike } from "./LibvfioUserLike.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lockstep-libvfio-user-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const all: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]
const geometry: SimDeviceConfig = { arcLatencyMs: 0, stateSize: 96 * 1024, pageSize: 4096, dirtyBytesPerSecond: 0 }
const served = ["nvme0", "nvme1"] as const
type ServedId = (typeof served)[number]

interface Setup {
  /** Whether the servers advertise and serve pre-copy. */
  readonly serverPrecopy: boolean
  /** `stopCopyLengthEstimate` per served device, as its group file gives it. */
  readonly estimates: Partial<Record<ServedId, number>>
  /** Faults of the source's simulated gpu0. */
  readonly gpuFaults?: SimDeviceConfig["faults"]
}

/**
 * One side: gpu0 simulated in-process (all flags), writing by P2P into nvme0 and nvme1, each a
 * simulated device served by a libvfio-user-like server and reached through the client. Every
 * member, simulated or not, is in the side's fabric.
 */
const side = (dir: string, role: "source" | "destination", setup: Setup, serverScope: Scope.Scope) =>
  Effect.gen(function* () {
    const seed = role === "source" ? 1 : 2
    const devices = new Map<ServedId, { readonly sim: SimDevice; readonly server: LibvfioUserLike }>()
    const entries = []
    for (const id of served) {
      const sim = yield* makeSimDevice(id, {
        ...geometry,
        seed,
        flags: flagsOf(setup.serverPrecopy ? ["STOP_COPY", "PRE_COPY"] : ["STOP_COPY"])
      })
      const socket = join(dir, `${role}-${id}.sock`)
      const server = yield* libvfioUserLike({ path: socket, device: sim, precopy: setup.serverPrecopy }).pipe(
        Scope.provide(serverScope)
      )
      devices.set(id, { sim, server })
      const estimate = setup.estimates[id]
      entries.push({
        id,
        kind: "pci",
        vfioUser: { socket, ...(estimate === undefined ? {} : { stopCopyLengthEstimate: estimate }) }
      })
    }
    const faults = role === "source" && setup.gpuFaults !== undefined ? { faults: setup.gpuFaults } : {}
    const attached = yield* attachVfioUserDevices(
      {
        devices: [{ id: "gpu0", kind: "pci", flags: all, sim: { ...geometry, ...faults } }, ...entries],
        topology: {
          edges: [
            ["gpu0", "nvme0"],
            ["gpu0", "nvme1"]
          ]
        }
      },
      { timeoutMs: 5000 }
    )
    const group = yield* decodeGroup(attached.document)
    const sim = yield* simulateGroup(group, {
      seed,
      others: attached.devices,
      writesPerSecond: 5000,
      ...(role === "destination" ? { role } : {})
    })
    const runtime: GroupRuntime = { group, devices: new Map<string, Device>([...sim.devices, ...sim.observed]) }
    const gpu = sim.devices.get("gpu0")
    if (gpu === undefined) return yield* Effect.die(new Error("gpu0 is not simulated"))
    // An incoming group waits stopped.
    if (role === "destination") yield* stop(runtime)
    return { runtime, sim, gpu, devices }
  })

const served_ = (s: { readonly devices: Map<ServedId, { readonly sim: SimDevice }> }, id: ServedId): SimDevice => {
  const d = s.devices.get(id)
  if (d === undefined) throw new Error(`${id} is not served`)
  return d.sim
}

const byDevice = (summary: SourceSummary) =>
  [...summary.assumedStopCopyLengths].sort((a, b) => a.device.localeCompare(b.device))

const migration = (setup: Setup, precopy: boolean) =>
  Effect.gen(function* () {
    const dir = yield* tempDir
    const servers = yield* Effect.scope
    const source = yield* side(dir, "source", setup, servers)
    const destination = yield* side(dir, "destination", setup, servers)
    for (const id of served)
      expect((yield* compareMemory(served_(source, id), served_(destination, id)))._tag).not.toBe("Identical")
    const [a, b] = yield* MemoryTransport.pair()
    const journal = Journal.memory()
    const [sent, received] = yield* Effect.all(
      [
        Effect.exit(migrateSource(source.runtime, a, { journal, peerTimeoutMs: 10_000, precopy })),
        Effect.exit(migrateDestination(destination.runtime, b, { decisionJournal: journal, peerTimeoutMs: 10_000 }))
      ],
      { concurrency: 2 }
    )
    return { source, destination, sent, received, journal }
  })

describe("migrating a group through libvfio-user-like servers", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly setup: Setup
    readonly precopy: boolean
    readonly check: (summary: SourceSummary) => void
  }> = [
    {
      name: "servers with pre-copy; nvme1 has no stop-copy estimate, so the estimate is unbounded",
      setup: { serverPrecopy: true, estimates: { nvme0: 100_000 } },
      precopy: true,
      check: (summary) => {
        expect(byDevice(summary)).toEqual([
          { device: "nvme0", bytes: 100_000, source: "estimate" },
          { device: "nvme1", bytes: PessimisticStopCopyLength, source: "pessimistic" }
        ])
        expect(summary.estimate?.totalMs).toBe(Number.POSITIVE_INFINITY)
        expect(summary.switchover).not.toBe("converged")
        expect(summary.rounds).toBeGreaterThan(0)
        // The served devices sent their state during pre-copy, through padded replies.
        for (const id of served) expect(summary.devices[id]?.precopyBytes).toBeGreaterThan(0)
      }
    },
    {
      name: "servers without pre-copy (the sample server's mode), the migration pre-copying gpu0",
      setup: { serverPrecopy: false, estimates: { nvme0: 100_000, nvme1: 100_000 } },
      precopy: true,
      check: (summary) => {
        expect(byDevice(summary).map((a) => a.source)).toEqual(["estimate", "estimate"])
        expect(Number.isFinite(summary.estimate?.totalMs)).toBe(true)
        expect(summary.devices.gpu0?.precopyBytes).toBeGreaterThan(0)
        for (const id of served) expect(summary.devices[id]?.precopyBytes).toBe(0)
      }
    },
    {
      name: "servers without pre-copy, the migration without pre-copy",
      setup: { serverPrecopy: false, estimates: {} },
      precopy: false,
      check: (summary) => {
        expect(summary.switchover).toBe("no-precopy")
        // Nothing was estimated, so nothing was assumed.
        expect(summary.assumedStopCopyLengths).toEqual([])
      }
    }
  ]

  for (const { name, setup, precopy, check } of cases)
    it.live(`${name}: verified byte for byte, P2P invariant kept over the whole group`, () =>
      Effect.gen(function* () {
        const { source, destination, sent, received } = yield* migration(setup, precopy)
        if (Exit.isFailure(sent)) return yield* Effect.die(Cause.squash(sent.cause))
        if (Exit.isFailure(received)) return yield* Effect.die(Cause.squash(received.cause))
        expect(sent.value.confirmed).toBe(true)
        check(sent.value)
        for (const id of served) {
          expect((yield* compareMemory(served_(source, id), served_(destination, id)))._tag).toBe("Identical")
          expect(yield* served_(source, id).getState).toBe("STOP_COPY")
          expect(yield* served_(destination, id).getState).toBe("RUNNING")
        }
        expect((yield* compareMemory(source.gpu, destination.gpu))._tag).toBe("Identical")
        // Every read was answered padded to the size asked, the last (empty) one included.
        for (const id of served) {
          const reads = source.devices.get(id)?.server.paddedReads ?? []
          expect(reads.length).toBeGreaterThan(1)
          for (const r of reads) expect(r.body).toBe(8 + r.asked)
          expect(reads.at(-1)?.size).toBe(0)
          expect(reads.some((r) => r.size > 0 && r.size < r.asked)).toBe(true)
        }
        // The fabrics saw the edges into the vfio-user devices, and no violation anywhere.
        for (const s of [source, destination]) {
          expect(s.sim.fabric.edges.map((e) => e.target).sort()).toEqual(["nvme0", "nvme1"])
          yield* s.sim.fabric.assertNoViolations
        }
        expect(source.sim.fabric.trace().some((e) => e.device === "nvme0" && e._tag === "ArcCompleted")).toBe(true)
      }).pipe(Effect.scoped)
    )

  it.live("a failed switchover rolls the source back to RUNNING, vfio-user devices included, safely", () =>
    Effect.gen(function* () {
      const { source, sent, received } = yield* migration(
        {
          serverPrecopy: true,
          estimates: { nvme0: 100_000, nvme1: 100_000 },
          gpuFaults: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY", leaveIn: "original" }]
        },
        true
      )
      expect(Exit.isFailure(sent) && Exit.isFailure(received)).toBe(true)
      const error = Exit.isFailure(sent) ? Cause.squash(sent.cause) : undefined
      expect(error).toBeInstanceOf(MigrationFailed)
      if (!(error instanceof MigrationFailed)) return
      expect(error.recovered).toBe(true)
      expect(error.states).toEqual({ gpu0: "RUNNING", nvme0: "RUNNING", nvme1: "RUNNING" })
      for (const id of served) expect(yield* served_(source, id).getState).toBe("RUNNING")
      yield* source.sim.fabric.assertNoViolations
    }).pipe(Effect.scoped)
  )

  it.live("the server serves one connection, then exits", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const path = join(dir, "one.sock")
      const sim = yield* makeSimDevice("nvme0", { ...geometry, flags: flagsOf(["STOP_COPY"]) })
      const server = yield* libvfioUserLike({ path, device: sim, precopy: false })
      const clientScope = yield* Scope.make()
      const client = yield* connect({ path, timeout: "2 seconds" }).pipe(Scope.provide(clientScope))
      expect(client.flags).toBe(flagsOf(["STOP_COPY"]))
      // The cut GET_REGION_INFO reply: 32 bytes, argsz saying the 80 the full answer needs.
      expect(yield* client.regionInfo(0)).toMatchObject({ index: 0, argsz: 80, size: 4096n })
      yield* Scope.close(clientScope, Exit.void)
      yield* Deferred.await(server.exited)
      expect(yield* Effect.flip(connect({ path, timeout: "1 second" }))).toMatchObject({
        _tag: "VfioUserConnectFailed"
      })
    }).pipe(Effect.scoped)
  )
})
