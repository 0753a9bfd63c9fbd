import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, type GroupRuntime, transition } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { type Flag, flagsOf, type State, stateClass } from "@lockstep/fsm"
import { makeSimDevice, simulateGroup } from "@lockstep/sim"
import { attachVfioUserDevices, serve } from "@lockstep/vfio-user"
import { Effect, Exit, Scope } from "effect"

const all: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lockstep-mixed-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Serves one simulated device over vfio-user; returns the server-side device for inspection. */
const served = (dir: string, id: string, flags: ReadonlyArray<Flag>) =>
  Effect.gen(function* () {
    const device = yield* makeSimDevice(id, { arcLatencyMs: 0, stateSize: 64 * 1024, flags: flagsOf(flags) })
    const socket = join(dir, `${id}.sock`)
    yield* serve({ path: socket, device })
    return { device, socket }
  })

const statesOf = (devices: Iterable<Device>) =>
  Effect.forEach([...devices], (d) => Effect.map(d.getState, (s) => [d.id, s] as const)).pipe(
    Effect.map((rows) => Object.fromEntries(rows))
  )

describe("a group mixing simulated and vfio-user devices", () => {
  it.live("takes the vfio-user devices' flags from their servers and moves the whole group", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const nvme = yield* served(dir, "nvme0", ["STOP_COPY", "PRE_COPY"])
      const gpu = yield* served(dir, "gpu1", all)
      const attached = yield* attachVfioUserDevices({
        devices: [
          { id: "gpu0", kind: "pci", flags: all, sim: { arcLatencyMs: 0 } },
          { id: "gpu1", kind: "pci", vfioUser: { socket: gpu.socket } },
          { id: "nvme0", kind: "pci", vfioUser: { socket: nvme.socket } }
        ],
        topology: {
          edges: [
            ["gpu0", "gpu1"],
            ["gpu1", "gpu0"],
            ["gpu1", "nvme0"]
          ]
        }
      })
      const group = yield* decodeGroup(attached.document)
      expect(group.devices.map((d) => d.flags)).toEqual([7, 7, 5])
      // The vfio-user devices join the fabric: the invariant is checked over the whole group.
      const sim = yield* simulateGroup(group, { others: attached.devices })
      expect([...sim.devices.keys()]).toEqual(["gpu0"])
      expect(sim.fabric.edges).toHaveLength(3)
      const runtime: GroupRuntime = { group, devices: new Map<string, Device>([...sim.devices, ...sim.observed]) }
      yield* transition(runtime, "STOP_COPY")
      expect(yield* statesOf(runtime.devices.values())).toEqual({
        gpu0: "STOP_COPY",
        gpu1: "STOP_COPY",
        nvme0: "STOP_COPY"
      })
      // The server-side devices really moved.
      expect(yield* gpu.device.getState).toBe("STOP_COPY")
      expect(yield* nvme.device.getState).toBe("STOP_COPY")
      yield* transition(runtime, "RUNNING")
      expect(yield* nvme.device.getState).toBe("RUNNING")
      yield* sim.fabric.assertNoViolations
    }).pipe(Effect.scoped)
  )

  it.live("refuses declared flags that disagree with the server, naming the device", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const nvme = yield* served(dir, "nvme0", ["STOP_COPY"])
      const error = yield* Effect.flip(
        attachVfioUserDevices({
          devices: [{ id: "nvme0", kind: "pci", flags: all, vfioUser: { socket: nvme.socket } }]
        })
      )
      expect(error.path).toBe("devices[0].flags")
      expect(error.message).toContain("reports STOP_COPY")
    }).pipe(Effect.scoped)
  )

  it.live("takes a device's stopCopyLengthEstimate from the group file, and refuses a bad one or an unknown key", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const nvme = yield* served(dir, "nvme0", ["STOP_COPY"])
      const attach = (vfioUser: Record<string, unknown>) =>
        attachVfioUserDevices({ devices: [{ id: "nvme0", kind: "pci", vfioUser }] })
      const attached = yield* attach({ socket: nvme.socket, stopCopyLengthEstimate: 65_536 })
      expect(attached.devices.get("nvme0")?.stopCopyLengthEstimate).toBe(65_536)
      for (const bad of [-1, 1.5, "64 KiB"]) {
        const error = yield* Effect.flip(attach({ socket: nvme.socket, stopCopyLengthEstimate: bad }))
        expect(error.path).toBe("devices[0].vfioUser.stopCopyLengthEstimate")
        expect(error.message).toContain("expected a whole number of bytes")
      }
      const misspelt = yield* Effect.flip(attach({ socket: nvme.socket, stopCopyLenghtEstimate: 1 }))
      expect(misspelt.path).toBe("devices[0].vfioUser.stopCopyLenghtEstimate")
      expect(misspelt.message).toContain('takes "socket" and "stopCopyLengthEstimate"')
    }).pipe(Effect.scoped)
  )

  it.live("names a socket nobody serves", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const error = yield* Effect.flip(
        attachVfioUserDevices({ devices: [{ id: "nvme0", kind: "pci", vfioUser: { socket: join(dir, "none.sock") } }] })
      )
      expect(error.path).toBe("devices[0].vfioUser.socket")
      expect(error.message).toContain("cannot attach nvme0")
    }).pipe(Effect.scoped)
  )

  /**
   * A group of gpu0 (served over vfio-user) and gpu1 (simulated), each able to write into the
   * other (shared IOMMU), moved to STOP_COPY while gpu0's server goes away. `loseAt` says when:
   * after a delay, or while gpu0's server carries out the arc into `loseOn`.
   */
  const loseServerMidTransition = (lose: { readonly afterMs: number } | { readonly loseOn: State }) =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const gpu0 = yield* makeSimDevice("gpu0", { arcLatencyMs: 0, stateSize: 64 * 1024 })
      const socket = join(dir, "gpu0.sock")
      const inner = yield* Scope.fork(yield* Effect.scope)
      const close = Scope.close(inner, Exit.void)
      // The server goes away while it carries out the arc: the arc is done on its side, and the
      // client never hears of it.
      const dying: Device =
        "loseOn" in lose
          ? {
              ...gpu0,
              setState: (to) =>
                to === lose.loseOn
                  ? gpu0.setState(to).pipe(Effect.andThen(Effect.forkDetach(close)), Effect.andThen(Effect.never))
                  : gpu0.setState(to)
            }
          : gpu0
      yield* serve({ path: socket, device: dying }).pipe(Scope.provide(inner))
      const attached = yield* attachVfioUserDevices(
        {
          devices: [
            { id: "gpu0", kind: "pci", vfioUser: { socket } },
            { id: "gpu1", kind: "pci", flags: all, sim: { arcLatencyMs: 5 } }
          ]
        },
        { timeoutMs: 500 }
      )
      const group = yield* decodeGroup(attached.document)
      const sim = yield* simulateGroup(group, { others: attached.devices })
      const runtime: GroupRuntime = { group, devices: new Map<string, Device>([...sim.devices, ...sim.observed]) }
      if ("afterMs" in lose) yield* Effect.forkChild(Effect.delay(close, lose.afterMs))
      const attempted: Array<State> = []
      const error = yield* Effect.flip(
        transition(runtime, "STOP_COPY", {
          arcTimeoutMs: 1000,
          onEvent: (event) => {
            if (event._tag === "ArcStarted" && event.device === "gpu0") attempted.push(event.arc.to)
          }
        })
      )
      return { error, attempted, server: gpu0, fabric: sim.fabric }
    }).pipe(Effect.scoped)

  it.live("rolls the group back when a vfio-user server goes away mid-transition", () =>
    Effect.gen(function* () {
      const { error, attempted, fabric } = yield* loseServerMidTransition({ afterMs: 2 })
      expect(error._tag).toBe("TransitionFailed")
      if (error._tag !== "TransitionFailed") return
      expect(error.finalStates.gpu0).toBe("UNKNOWN")
      expect(error.rolledBack).toBe(false)
      expect(error.cause).toMatchObject({ _tag: "DeviceError", reason: { _tag: "DeviceUnreachable" } })
      // gpu1 may write into gpu0. It goes back to RUNNING only if gpu0 cannot be halted, that is
      // if no arc started on gpu0 was going into a halted state (how far gpu0 got before its
      // server went away depends on the machine's timing).
      const gpu0MayBeHalted = attempted.some((s) => stateClass(s) === "halted")
      expect(error.finalStates.gpu1).toBe(gpu0MayBeHalted ? "RUNNING_P2P" : "RUNNING")
      expect(error.held).toEqual(gpu0MayBeHalted ? ["gpu1"] : [])
      yield* fabric.assertNoViolations
    })
  )

  it.live("keeps a peer quiesced when a vfio-user device may have halted before its server went away", () =>
    Effect.gen(function* () {
      const { error, attempted, server, fabric } = yield* loseServerMidTransition({ loseOn: "STOP" })
      expect(error._tag).toBe("TransitionFailed")
      if (error._tag !== "TransitionFailed") return
      expect(attempted).toContain("STOP")
      expect(error.cause).toMatchObject({ _tag: "DeviceError", reason: { _tag: "DeviceUnreachable" } })
      // The server did halt gpu0: had gpu1 gone back to RUNNING, it would write into it.
      expect(yield* server.getState).toBe("STOP")
      expect(error.finalStates).toEqual({ gpu0: "UNKNOWN", gpu1: "RUNNING_P2P" })
      expect(error.held).toEqual(["gpu1"])
      expect(error.rolledBack).toBe(false)
      expect(error.message).toContain("gpu1 held quiesced")
      yield* fabric.assertNoViolations
    })
  )
})
