import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, type GroupRuntime } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { Journal, MigrationFailed, migrateDestination, migrateSource } from "@lockstep/migration"
import { compareMemory, makeSimDevice, type SimDevice, simulateGroup } from "@lockstep/sim"
import { MemoryTransport } from "@lockstep/stream"
import { attachVfioUserDevices, serve } from "@lockstep/vfio-user"
import { Cause, Effect, Exit, Scope } from "effect"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lockstep-mixed-migration-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const geometry = { arcLatencyMs: 0, stateSize: 128 * 1024, pageSize: 4096, dirtyBytesPerSecond: 0 }

/**
 * One side of the migration: gpu0 simulated in-process, nvme0 a simulated device served over
 * vfio-user (flags STOP_COPY + PRE_COPY, no P2P) and reached through the protocol client.
 */
const side = (dir: string, role: string, seed: number, serverScope: Scope.Scope) =>
  Effect.gen(function* () {
    const nvme = yield* makeSimDevice("nvme0", { ...geometry, seed, flags: 5 })
    const socket = join(dir, `${role}-nvme0.sock`)
    yield* serve({ path: socket, device: nvme }).pipe(Scope.provide(serverScope))
    const attached = yield* attachVfioUserDevices(
      {
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: geometry },
          { id: "nvme0", kind: "pci", vfioUser: { socket } }
        ],
        topology: { edges: [["gpu0", "nvme0"]] }
      },
      { timeoutMs: 2000 }
    )
    const group = yield* decodeGroup(attached.document)
    // nvme0 joins the fabric, so that the gpu0 → nvme0 edge is checked like any other.
    const sim = yield* simulateGroup(group, { seed, others: attached.devices })
    expect(sim.fabric.edges).toEqual([{ initiator: "gpu0", target: "nvme0" }])
    const runtime: GroupRuntime = { group, devices: new Map<string, Device>([...sim.devices, ...sim.observed]) }
    const gpu = sim.devices.get("gpu0") as SimDevice
    return { runtime, sim, gpu, nvme }
  })

describe("migrating a group that mixes simulated and vfio-user devices", () => {
  it.live("moves every device's state, the vfio-user one through the protocol, and verifies it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const servers = yield* Effect.scope
      const source = yield* side(dir, "source", 1, servers)
      const destination = yield* side(dir, "destination", 2, servers)
      expect((yield* compareMemory(source.nvme, destination.nvme))._tag).not.toBe("Identical")
      const [a, b] = yield* MemoryTransport.pair()
      const journal = Journal.memory()
      const [sent, received] = yield* Effect.all(
        [
          migrateSource(source.runtime, a, { journal, peerTimeoutMs: 5000 }),
          migrateDestination(destination.runtime, b, { decisionJournal: journal, peerTimeoutMs: 5000 })
        ],
        { concurrency: 2 }
      )
      expect(sent.confirmed).toBe(true)
      expect(received.migration).toBe(sent.migration)
      expect(yield* source.nvme.getState).toBe("STOP_COPY")
      expect(yield* destination.nvme.getState).toBe("RUNNING")
      expect(yield* destination.gpu.getState).toBe("RUNNING")
      expect((yield* compareMemory(source.nvme, destination.nvme))._tag).toBe("Identical")
      expect((yield* compareMemory(source.gpu, destination.gpu))._tag).toBe("Identical")
      yield* source.sim.fabric.assertNoViolations
      yield* destination.sim.fabric.assertNoViolations
    }).pipe(Effect.scoped)
  )

  it.live(
    "a destination vfio-user server that goes away mid-migration fails both sides and rolls the source back",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const servers = yield* Effect.scope
        const source = yield* side(dir, "source", 1, servers)
        const destinationServer = yield* Scope.fork(servers)
        const destination = yield* side(dir, "destination", 2, destinationServer)
        const [a, b] = yield* MemoryTransport.pair({ capacity: 16 * 1024 })
        const journal = Journal.memory()
        // The destination's vfio-user server closes once the destination has started taking data.
        yield* Effect.forkChild(
          Effect.gen(function* () {
            while ((yield* destination.nvme.getState) !== "RESUMING") yield* Effect.sleep(1)
            yield* Scope.close(destinationServer, Exit.void)
          })
        )
        const [sent, received] = yield* Effect.all(
          [
            Effect.exit(migrateSource(source.runtime, a, { journal, peerTimeoutMs: 3000, arcTimeoutMs: 1000 })),
            Effect.exit(
              migrateDestination(destination.runtime, b, {
                decisionJournal: journal,
                peerTimeoutMs: 3000,
                arcTimeoutMs: 1000
              })
            )
          ],
          { concurrency: 2 }
        )
        const sourceError = Exit.isFailure(sent) ? Cause.squash(sent.cause) : undefined
        const destinationError = Exit.isFailure(received) ? Cause.squash(received.cause) : undefined
        expect(sourceError).toBeInstanceOf(MigrationFailed)
        expect(destinationError).toBeInstanceOf(MigrationFailed)
        if (!(sourceError instanceof MigrationFailed) || !(destinationError instanceof MigrationFailed)) return
        expect(sourceError.recovered).toBe(true)
        expect(sourceError.states).toEqual({ gpu0: "RUNNING", nvme0: "RUNNING" })
        expect(destinationError.side).toBe("destination")
        expect(destinationError.message).toContain("nvme0")
        expect(yield* source.gpu.getState).toBe("RUNNING")
        expect(yield* source.nvme.getState).toBe("RUNNING")
        // Nothing was committed: the destination's simulated device was reset, never resumed.
        expect(destination.sim.fabric.trace().some((e) => e._tag === "Reset" && e.device === "gpu0")).toBe(true)
        expect((yield* Journal.ownership(journal))._tag).toBe("SourceOwns")
        yield* source.sim.fabric.assertNoViolations
        yield* destination.sim.fabric.assertNoViolations
      }).pipe(Effect.scoped)
  )
})
