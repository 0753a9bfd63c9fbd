import { existsSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { AllFlags, arcsFor, type Flags, flagsOf, path, type State } from "@lockstep/fsm"
import { compareMemory, makeSimDevice } from "@lockstep/sim"
import {
  connect,
  DeviceInfoFlag,
  MaxMessageSize,
  RegionInfoFlag,
  serve,
  type VfioUserDevice
} from "@lockstep/vfio-user"
import { Effect, Exit, Result, Scope } from "effect"
import { servedSim, tempDir } from "./Harness.js"

/** A small, still device: no arc latency, no dirtying, so every run moves the same bytes. */
const still = { arcLatencyMs: 0, dirtyBytesPerSecond: 0, stateSize: 64 * 1024, pageSize: 4096 }

/** Walks a device from its current state to `to`, one single arc per request. */
const walk = (device: VfioUserDevice, to: State) =>
  Effect.gen(function* () {
    const from = yield* device.getState
    const steps = path(from, to, device.flags)
    if (Result.isFailure(steps)) return yield* Effect.die(steps.failure)
    for (const next of steps.success.slice(1)) yield* device.setState(next)
  })

describe("vfio-user client against the in-project server", () => {
  it.live("negotiates version, device info, regions and migration flags", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const { client } = yield* servedSim(dir, "gpu0", still)
      expect(client.server.version).toEqual({ major: 0, minor: 2 })
      expect(client.server.capabilities).toEqual({
        maxMsgFds: 0,
        maxDataXferSize: 1 << 20,
        migration: { pgsize: 4096 }
      })
      expect(client.server.chunkSize).toBe(MaxMessageSize - 24)
      expect(client.server.device).toEqual({
        flags: DeviceInfoFlag.RESET | DeviceInfoFlag.PCI,
        numRegions: 9,
        // vfio-pci's five interrupt types (INTx, MSI, MSI-X, ERR, REQ), none implemented.
        numIrqs: 5
      })
      expect(client.server.migrationError).toBeUndefined()
      expect([client.id, client.kind, client.flags]).toEqual(["gpu0", "pci", AllFlags])

      expect(yield* client.regionInfo(7)).toEqual({
        index: 7,
        flags: RegionInfoFlag.READ | RegionInfoFlag.WRITE,
        size: 256n,
        offset: 0n,
        argsz: 32
      })
      expect((yield* client.regionInfo(0)).size).toBe(0n)
      yield* client.regionWrite(7, 16n, new Uint8Array([1, 2, 3, 4]))
      expect(yield* client.regionRead(7, 14n, 8)).toEqual(new Uint8Array([0, 0, 1, 2, 3, 4, 0, 0]))
      expect(yield* Effect.flip(client.regionRead(7, 250n, 8))).toMatchObject({ _tag: "ServerError", code: "EINVAL" })
      expect(yield* Effect.flip(client.regionInfo(9))).toMatchObject({ _tag: "ServerError", code: "EINVAL" })
      // A device without interrupts answers every index with count 0 (the kernel's answer for an
      // unimplemented type), and an index beyond num_irqs with EINVAL.
      for (let index = 0; index < 5; index++)
        expect(yield* client.irqInfo(index)).toEqual({ index, flags: 0, count: 0 })
      expect(yield* Effect.flip(client.irqInfo(5))).toMatchObject({ _tag: "ServerError", code: "EINVAL" })
    })
  )

  it.live("reports the served device's flags: a server without P2P is a device without the P2P flag", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const sets: ReadonlyArray<Flags> = [flagsOf(["STOP_COPY"]), flagsOf(["STOP_COPY", "PRE_COPY"]), AllFlags]
      for (const flags of sets) {
        const { client } = yield* servedSim(dir, `dev${flags}`, { ...still, flags, kind: "mdev" }, { kind: "mdev" })
        expect([client.flags, client.kind]).toEqual([flags, "mdev"])
      }
      const { client } = yield* servedSim(dir, "nomig", { ...still, flags: 0 })
      expect(client.flags).toBe(0)
      expect(client.server.migrationError).toMatchObject({ _tag: "ServerError", code: "ENOTSUP" })
    })
  )

  it.live("performs every legal arc of every flag set, one request each", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      let performed = 0
      for (const flags of [AllFlags, flagsOf(["STOP_COPY", "PRE_COPY"]), flagsOf(["STOP_COPY", "P2P"]), 1]) {
        const { sim, client } = yield* servedSim(dir, `arcs${flags}`, { ...still, flags })
        for (const arc of arcsFor(flags)) {
          yield* client.reset
          yield* walk(client, arc.from)
          expect(yield* client.getState).toBe(arc.from)
          if (arc.from === "RESUMING") {
            // Nothing was written: the device rejects the empty stream, and says where it stayed.
            expect(yield* Effect.flip(client.setState(arc.to))).toMatchObject({
              reason: {
                _tag: "ArcFailed",
                arc,
                code: "EINVAL",
                stateAfter: "RESUMING"
              }
            })
            continue
          }
          yield* client.setState(arc.to)
          expect(yield* client.getState).toBe(arc.to)
          expect(yield* sim.getState).toBe(arc.to)
          performed++
        }
      }
      expect(performed).toBe(15 + 9 + 8 + 6 - 4)
    })
  )

  it.live("refuses a non-arc locally, before sending, with ArcRejected", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const { sim, client } = yield* servedSim(dir, "gpu0", still)
      const refused: ReadonlyArray<readonly [State, State]> = [
        ["RUNNING", "STOP"],
        ["RUNNING", "ERROR"],
        ["RUNNING", "RUNNING"],
        ["STOP_COPY", "PRE_COPY"]
      ]
      for (const [from, to] of refused) {
        yield* walk(client, from)
        expect(yield* Effect.flip(client.setState(to))).toMatchObject({
          reason: {
            _tag: "ArcRejected",
            device: "gpu0",
            arc: { from, to },
            code: "EINVAL"
          }
        })
        expect(yield* sim.getState).toBe(from)
      }
    })
  )

  it.live("reads the state back after a failed arc", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const { client } = yield* servedSim(dir, "gpu0", {
        ...still,
        faults: [{ _tag: "FailArc", from: "STOP", to: "STOP_COPY", leaveIn: "error", code: "EIO" }]
      })
      yield* walk(client, "STOP")
      expect(yield* Effect.flip(client.setState("STOP_COPY"))).toMatchObject({
        reason: {
          _tag: "ArcFailed",
          arc: { from: "STOP", to: "STOP_COPY" },
          code: "EIO",
          stateAfter: "ERROR"
        }
      })
      expect(yield* Effect.flip(client.setState("RUNNING"))).toMatchObject({ reason: { _tag: "ArcRejected" } })
      yield* client.reset
      expect(yield* client.getState).toBe("RUNNING")
    })
  )

  it.live("saves one served device and restores it into another, byte for byte", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const size = 256 * 1024
      const src = yield* servedSim(dir, "src", { ...still, stateSize: size, precopyInitialBytes: size / 2, seed: 1 })
      const dst = yield* servedSim(dir, "dst", { ...still, stateSize: size, seed: 2 })
      expect((yield* compareMemory(src.sim, dst.sim))._tag).toBe("Different")
      const estimate = yield* src.client.stopCopyLength
      expect(estimate).toBeGreaterThan(size)

      // The spec has no pre-copy info message, so the v2 opt-in (REINIT) is declined too.
      expect(yield* src.client.enablePrecopyInfoV2).toBe(false)
      yield* src.client.setState("PRE_COPY")
      expect(yield* Effect.flip(src.client.precopyInfo)).toMatchObject({
        reason: {
          _tag: "SessionFailed",
          operation: "precopyInfo",
          code: "EOPNOTSUPP",
          state: "PRE_COPY"
        }
      })
      yield* walk(dst.client, "RESUMING")
      let moved = 0
      for (;;) {
        const r = yield* src.client.read(1 << 20)
        if (r._tag !== "Chunk") {
          expect(r._tag).toBe("NoData")
          break
        }
        expect(r.data.length).toBeLessThanOrEqual(src.client.server.chunkSize)
        yield* dst.client.write(r.data)
        moved += r.data.length
      }
      expect(moved).toBeGreaterThan(size / 2)
      expect(moved).toBeLessThan(size)

      yield* walk(src.client, "STOP_COPY")
      // The rest in one write: the client cuts it into messages of at most 64 KiB.
      const rest: Array<Uint8Array> = []
      for (;;) {
        const r = yield* src.client.read(100_000)
        if (r._tag === "End") break
        if (r._tag !== "Chunk") return yield* Effect.die(`unexpected ${r._tag} in STOP_COPY`)
        rest.push(r.data)
      }
      const total = rest.reduce((n, c) => n + c.length, 0)
      const joined = new Uint8Array(total)
      rest.reduce((at, c) => {
        joined.set(c, at)
        return at + c.length
      }, 0)
      expect(total).toBeGreaterThan(MaxMessageSize)
      yield* dst.client.write(joined)
      expect(moved + total).toBe(estimate)
      expect(yield* src.client.read(4096)).toEqual({ _tag: "End" })

      yield* dst.client.setState("STOP")
      expect(yield* compareMemory(src.sim, dst.sim)).toEqual({ _tag: "Identical" })
      yield* walk(dst.client, "RUNNING")
      expect(yield* dst.sim.getState).toBe("RUNNING")
    })
  )

  it.live("resets a device out of a saving state", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const { client } = yield* servedSim(dir, "gpu0", still)
      yield* walk(client, "STOP_COPY")
      expect((yield* client.read(4096))._tag).toBe("Chunk")
      yield* client.reset
      expect(yield* client.getState).toBe("RUNNING")
      expect(yield* Effect.flip(client.read(4096))).toMatchObject({
        reason: {
          _tag: "SessionFailed",
          operation: "read",
          code: "EINVAL",
          state: "RUNNING"
        }
      })
      expect(yield* Effect.flip(client.write(new Uint8Array(8)))).toMatchObject({
        reason: {
          _tag: "SessionFailed",
          operation: "write"
        }
      })
    })
  )

  it.live("turns a server that closes mid-transfer into DeviceUnreachable, and removes its socket", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const socket = join(dir, "src.sock")
      const serverScope = yield* Scope.make()
      const sim = yield* makeSimDevice("src", still)
      yield* serve({ path: socket, device: sim }).pipe(Scope.provide(serverScope))
      const client = yield* connect({ path: socket, id: "src", timeout: "2 seconds" })
      yield* walk(client, "STOP_COPY")
      expect((yield* client.read(4096))._tag).toBe("Chunk")
      yield* Scope.close(serverScope, Exit.void)
      expect(existsSync(socket)).toBe(false)
      expect(yield* Effect.flip(client.read(4096))).toMatchObject({
        reason: {
          _tag: "DeviceUnreachable",
          device: "src",
          operation: "read"
        }
      })
      expect(yield* Effect.flip(client.getState)).toMatchObject({
        reason: { _tag: "DeviceUnreachable", operation: "getState" }
      })
    })
  )

  it.live("turns a hung arc into DeviceUnreachable after the timeout; the next client is served", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const socket = join(dir, "gpu0.sock")
      const sim = yield* makeSimDevice("gpu0", {
        ...still,
        faults: [{ _tag: "HangArc", from: "STOP", to: "STOP_COPY" }]
      })
      yield* serve({ path: socket, device: sim })
      const clientScope = yield* Scope.make()
      const client = yield* connect({ path: socket, id: "gpu0", timeout: "300 millis" }).pipe(
        Scope.provide(clientScope)
      )
      yield* walk(client, "STOP")
      const error = yield* Effect.flip(client.setState("STOP_COPY"))
      expect(error).toMatchObject({ reason: { _tag: "DeviceUnreachable", operation: "setState" } })
      expect(error.message).toMatch(
        /did not answer DEVICE_FEATURE SET MIG_DEVICE_STATE \(msg_id \d+\) within 300 ms; expected the device in STOP_COPY/
      )
      // The first client leaves: the server gives up the hung arc (interrupted: back in STOP).
      yield* Scope.close(clientScope, Exit.void)
      const next = yield* connect({ path: socket, id: "gpu0", timeout: "1 second" })
      expect(yield* next.getState).toBe("STOP")
    })
  )
})
