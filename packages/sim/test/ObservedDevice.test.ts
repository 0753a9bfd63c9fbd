import { describe, expect, it } from "@effect/vitest"
import { type Device, DeviceError } from "@lockstep/device"
import { AllFlags, type State } from "@lockstep/fsm"
import { decodeGroup } from "@lockstep/group"
import { makeFabric, makeSimDevice, observeDevice, type SimDeviceConfig, simulateGroup } from "@lockstep/sim"
import { Effect } from "effect"
import { walk } from "./Transfer.js"
import { untilDone } from "./VirtualTime.js"

const config: SimDeviceConfig = { stateSize: 64 << 10, pageSize: 4096, dirtyBytesPerSecond: 0, arcLatencyMs: 1 }

/**
 * A device of "another backend", written here from the port alone: single arcs take 1 ms, and a
 * reset behaves as libvfio-user's does (refused in STOP/STOP_COPY, otherwise the state stays).
 */
const foreignDevice = (id: string, start: State = "RUNNING"): Device & { state: State } => {
  const device: Device & { state: State } = {
    state: start,
    id,
    kind: "pci" as const,
    flags: AllFlags,
    getState: Effect.sync(() => device.state),
    setState: (to: State): Effect.Effect<void> =>
      Effect.sleep(1).pipe(
        Effect.andThen(
          Effect.sync(() => {
            device.state = to
          })
        )
      ),
    read: () => Effect.succeed({ _tag: "End" as const }),
    write: () => Effect.void,
    precopyInfo: Effect.succeed({ initialBytes: 0, dirtyBytes: 0 }),
    stopCopyLength: Effect.succeed(0),
    reset: Effect.suspend(() =>
      device.state === "STOP" || device.state === "STOP_COPY"
        ? Effect.fail(DeviceError.resetFailed({ device: id, code: "EINVAL", reason: "refused in a stopped state" }))
        : Effect.void
    )
  }
  return device
}

describe("a fabric observing devices of any backend", () => {
  it.effect("records an observed target stopped before its initiator quiesces as a violation", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", config)
      const b = yield* observeDevice(foreignDevice("b"))
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* untilDone(walk(b, "STOP"))
      expect(fabric.violations()).toMatchObject([
        {
          edge: { initiator: "a", target: "b" },
          initiator: { state: "RUNNING" },
          target: { state: "RUNNING_P2P", inFlight: { from: "RUNNING_P2P", to: "STOP" } },
          cause: { device: "b", event: "ArcStarted" }
        }
      ])
      yield* untilDone(walk(a, "STOP"))
      expect(fabric.corruptingWrites().length).toBeGreaterThan(0)
    })
  )

  it.effect("records an observed initiator running while its simulated target is stopped", () =>
    Effect.gen(function* () {
      const a = yield* observeDevice(foreignDevice("a"))
      const b = yield* makeSimDevice("b", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* untilDone(walk(a, "RUNNING_P2P"))
      yield* untilDone(walk(b, "STOP"))
      expect(fabric.violations()).toEqual([])
      yield* untilDone(walk(a, "RUNNING"))
      expect(fabric.violations()).toMatchObject([
        { cause: { device: "a", event: "ArcStarted" }, initiator: { inFlight: { to: "RUNNING" } } }
      ])
    })
  )

  it.effect("keeps the invariant when initiators quiesce first, whatever the backends", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", config)
      const b = yield* observeDevice(foreignDevice("b"))
      const fabric = yield* makeFabric({
        devices: [a, b],
        edges: [
          { initiator: "a", target: "b" },
          { initiator: "b", target: "a" }
        ]
      })
      yield* untilDone(Effect.all([walk(a, "RUNNING_P2P"), walk(b, "RUNNING_P2P")], { concurrency: 2 }))
      yield* untilDone(Effect.all([walk(a, "STOP_COPY"), walk(b, "STOP_COPY")], { concurrency: 2 }))
      yield* untilDone(Effect.all([walk(a, "RUNNING_P2P"), walk(b, "RUNNING_P2P")], { concurrency: 2 }))
      yield* untilDone(Effect.all([walk(a, "RUNNING"), walk(b, "RUNNING")], { concurrency: 2 }))
      yield* fabric.assertNoViolations
      expect(fabric.trace().filter((e) => e.device === "b" && e._tag === "ArcCompleted")).toHaveLength(6)
    })
  )

  it.effect("takes a failed arc's state from the error: a device failed into ERROR may DMA", () =>
    Effect.gen(function* () {
      const failing = yield* makeSimDevice("a", {
        ...config,
        faults: [{ _tag: "FailArc", from: "STOP", leaveIn: "error" }]
      })
      const a = yield* observeDevice(failing)
      const b = yield* makeSimDevice("b", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* untilDone(walk(a, "STOP"))
      yield* untilDone(walk(b, "STOP"))
      yield* untilDone(Effect.result(a.setState("RUNNING_P2P")))
      expect(fabric.violations()).toMatchObject([
        { initiator: { state: "ERROR" }, target: { state: "STOP" }, cause: { device: "a", event: "ArcFailed" } }
      ])
    })
  )

  it.effect("reads the state back after a reset: a server that keeps the state is seen keeping it", () =>
    Effect.gen(function* () {
      const b = yield* observeDevice(foreignDevice("b", "PRE_COPY"))
      const a = yield* makeSimDevice("a", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "b", target: "a" }] })
      // Accepted in PRE_COPY, and the state kept.
      yield* b.reset
      yield* untilDone(walk(b, "STOP"))
      // Refused in STOP: recorded with the state read back, and bus mastering not counted as off.
      expect(yield* Effect.flip(b.reset)).toMatchObject({ reason: { _tag: "ResetFailed" } })
      expect(fabric.trace().filter((e) => e.device === "b" && e._tag === "Reset")).toMatchObject([
        { from: "PRE_COPY", state: "PRE_COPY" },
        { from: "STOP", state: "STOP" }
      ])
      yield* fabric.assertNoViolations
    })
  )
})

/** A simulated GPU writing into an NVMe device that another backend (vfio-user) serves. */
const gpuWritingIntoNvme = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: config },
    { id: "nvme0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], vfioUser: { socket: "unused" } }
  ],
  topology: { edges: [["gpu0", "nvme0"]] }
}

describe("simulateGroup with devices of other backends", () => {
  it.effect("joins them to the fabric, so that edges touching them are checked", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(gpuWritingIntoNvme)
      const sim = yield* simulateGroup(group, { others: new Map([["nvme0", foreignDevice("nvme0")]]) })
      expect([...sim.devices.keys()]).toEqual(["gpu0"])
      expect(sim.fabric.edges).toEqual([{ initiator: "gpu0", target: "nvme0" }])
      const nvme = sim.observed.get("nvme0")
      if (nvme === undefined) throw new Error("nvme0 not observed")
      yield* untilDone(walk(nvme, "STOP"))
      expect(sim.fabric.violations()).toMatchObject([{ edge: { initiator: "gpu0", target: "nvme0" } }])
    })
  )

  it.effect("reads no other backend's key: a device is simulated unless given in others or left out by simulates", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(gpuWritingIntoNvme)
      const all = yield* simulateGroup(group)
      expect([...all.devices.keys()]).toEqual(["gpu0", "nvme0"])
      expect(all.fabric.edges).toEqual([{ initiator: "gpu0", target: "nvme0" }])
      // Left out, nvme0 is no end of a fabric edge: the caller that owns it joins it through `others`.
      const some = yield* simulateGroup(group, { simulates: (d) => d.id !== "nvme0" })
      expect([...some.devices.keys()]).toEqual(["gpu0"])
      expect(some.fabric.edges).toEqual([])
    })
  )

  it.effect("refuses a device that is not the group's", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup({ devices: [{ id: "gpu0", kind: "pci", flags: ["STOP_COPY"] }] })
      const error = yield* Effect.flip(simulateGroup(group, { others: new Map([["nic9", foreignDevice("nic9")]]) }))
      expect(error).toMatchObject({ _tag: "InvalidSimConfig", device: "nic9" })
    })
  )
})
