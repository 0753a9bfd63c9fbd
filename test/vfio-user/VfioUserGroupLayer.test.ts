/*
 * A migration whose two groups are given by `VfioUserGroup.layer`: each side's devices are
 * simulated devices served over vfio-user, reached only through the protocol client the layer
 * connects. The fabric is built over the served devices themselves (the ones that really move),
 * so the P2P invariant is judged where the transitions happen, not by what the client believes.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Journal, Migration, MigrationJournal, MigrationTransport } from "@lockstep/migration"
import { compareMemory, makeFabric, makeSimDevice } from "@lockstep/sim"
import { MemoryTransport, type Transport } from "@lockstep/stream"
import { serve, type VfioUserDevice, VfioUserGroup } from "@lockstep/vfio-user"
import { Effect, Layer } from "effect"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lockstep-vfio-user-layer-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const geometry = { arcLatencyMs: 0, stateSize: 64 * 1024, pageSize: 4096, dirtyBytesPerSecond: 0 }
const ids = ["gpu0", "gpu1"] as const
/** Flags STOP_COPY, P2P and PRE_COPY: the two GPUs write into each other. */
const allFlags = 7

/** One side: two GPUs served over vfio-user, each able to write into the other, and a fabric over the served devices. */
const servedSide = (dir: string, role: string, seed: number) =>
  Effect.gen(function* () {
    const served = yield* Effect.forEach(ids, (id) =>
      Effect.gen(function* () {
        const device = yield* makeSimDevice(id, { ...geometry, seed, flags: allFlags })
        const socket = join(dir, `${role}-${id}.sock`)
        yield* serve({ path: socket, device })
        return { id, device, socket }
      })
    )
    const fabric = yield* makeFabric({
      devices: served.map((s) => s.device),
      edges: [
        { initiator: "gpu0", target: "gpu1" },
        { initiator: "gpu1", target: "gpu0" }
      ],
      writesPerSecond: 2000,
      seed
    })
    const document = {
      devices: served.map((s) => ({ id: s.id, kind: "pci", vfioUser: { socket: s.socket } })),
      topology: {
        edges: [
          ["gpu0", "gpu1"],
          ["gpu1", "gpu0"]
        ]
      }
    }
    return { served, fabric, document }
  })

describe("VfioUserGroup.layer", () => {
  it.live("provides the group a migration drives, keeps P2P safe, and closes its connections with its scope", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const source = yield* servedSide(dir, "source", 1)
      const destination = yield* servedSide(dir, "destination", 2)
      const [a, b] = yield* MemoryTransport.pair()
      const journal = Journal.memory()
      const limits = { peerTimeoutMs: 5_000, arcTimeoutMs: 2_000 }
      // At the destination's vote (source stopped, destination validated), each device's copy equals its original.
      const verified: Array<boolean> = []
      const verify = Effect.forEach(ids, (_, i) => {
        const original = source.served[i]?.device
        const copy = destination.served[i]?.device
        return original === undefined || copy === undefined
          ? Effect.succeed(false)
          : Effect.map(compareMemory(original, copy), (c) => c._tag === "Identical")
      }).pipe(
        Effect.tap((all) =>
          Effect.sync(() => {
            verified.push(...all)
          })
        ),
        Effect.asVoid
      )
      /** The clients the layer connected, kept to see them closed afterwards. */
      const clients: Array<VfioUserDevice> = []
      const keepClients = Effect.flatMap(VfioUserGroup, (g) =>
        Effect.sync(() => {
          clients.push(...g.devices.values())
        })
      )
      const layers = (side: typeof source, transport: Transport) =>
        Layer.mergeAll(
          VfioUserGroup.layer(side.document, { timeoutMs: 2_000 }),
          MigrationTransport.layer(transport),
          MigrationJournal.layer(journal)
        )
      const [sent, received] = yield* Effect.all(
        [
          Effect.andThen(keepClients, Migration.source(limits)).pipe(Effect.provide(layers(source, a))),
          Effect.andThen(keepClients, Migration.destination({ ...limits, beforeVote: verify })).pipe(
            Effect.provide(layers(destination, b))
          )
        ],
        { concurrency: 2 }
      )

      expect(sent.confirmed).toBe(true)
      expect(received.migration).toBe(sent.migration)
      expect(verified).toEqual([true, true])
      // The served devices moved: the source's stay stopped, the destination's run.
      for (const { device } of source.served) expect(yield* device.getState).toBe("STOP_COPY")
      for (const { device } of destination.served) expect(yield* device.getState).toBe("RUNNING")
      for (const side of [source, destination]) {
        yield* side.fabric.settle
        yield* side.fabric.assertNoViolations
        expect(side.fabric.corruptingWrites()).toEqual([])
      }
      // Both layers' scopes have closed: every connection they opened is closed, by this side.
      expect(clients).toHaveLength(4)
      for (const client of clients) {
        const error = yield* Effect.flip(client.getState)
        expect(error.message).toContain("the client closed the connection")
      }
    }).pipe(Effect.scoped)
  )

  it.live("refuses a group with a device not served over vfio-user, naming it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const side = yield* servedSide(dir, "source", 1)
      const [gpu0] = side.document.devices
      const document = {
        devices: [gpu0, { id: "nvme0", kind: "pci", flags: ["STOP_COPY"], sim: geometry }]
      }
      const error = yield* Effect.flip(Effect.provide(Effect.void, VfioUserGroup.layer(document)))
      expect(error._tag).toBe("VfioUserDeviceInvalid")
      if (error._tag !== "VfioUserDeviceInvalid") return
      expect(error.path).toBe("devices[1]")
      expect(error.message).toContain("nvme0 is not served over vfio-user")
    }).pipe(Effect.scoped)
  )
})
