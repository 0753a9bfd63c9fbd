import { describe, expect, it } from "@effect/vitest"
import { decodeGroup } from "@lockstep/coordinator"
import { type Device, DeviceError } from "@lockstep/device"
import { runOnVirtualTime, type SimDevice } from "@lockstep/sim"
import { Effect } from "effect"
import { transitionOptions } from "../src/GroupTransition.js"
import { resolveSession } from "../src/Options.js"
import { recoverGroup, recoveryTargets } from "../src/Recovery.js"
import { failureOf, makePair, migrate, statesOf, threeGpus, wrapDevices } from "./Harness.js"

/*
 * The recovery's targets, by DESIGN §2 (ERROR policy) and §3.6 (a failed source runs again, a
 * failed destination is reset and parked in STOP); and a refused reset on a device that already
 * is where it must end (vfio-user servers refuse DEVICE_RESET in STOP, vfio-user-notes.md).
 */

const mixed = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"] },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"] },
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "vgpu0", kind: "mdev", flags: ["STOP_COPY"] }
  ],
  topology: "shared-iommu"
}

describe("recoveryTargets", () => {
  it.effect("a source under quarantine: the ERROR device is left out of the plan, every other device runs again", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(mixed)
      const t = recoveryTargets(
        group,
        "quarantine",
        "RUNNING",
        { gpu0: "ERROR", gpu1: "PRE_COPY", nic0: "RUNNING_P2P", vgpu0: "STOP" },
        false
      )
      expect(t.quarantined).toEqual(["gpu0"])
      expect(t.guarded).toEqual([])
      expect(t.reset).toEqual([])
      expect(t.required).toEqual({ gpu0: "ERROR", gpu1: "RUNNING", nic0: "RUNNING", vgpu0: "RUNNING" })
    })
  )

  it.effect("a destination under quarantine: the ERROR device's targets stay out of STOP, the rest is parked", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(mixed)
      const t = recoveryTargets(
        group,
        "quarantine",
        "STOP",
        { gpu0: "RESUMING", gpu1: "ERROR", nic0: "RESUMING", vgpu0: "RESUMING" },
        true
      )
      expect(t.quarantined).toEqual(["gpu1"])
      // Shared IOMMU: gpu1 may write into every other PCI device, never into the mdev.
      expect([...t.guarded].sort()).toEqual(["gpu0", "nic0"])
      expect(t.reset).toEqual(["gpu0", "nic0", "vgpu0"])
      expect(t.required).toEqual({ gpu0: "RUNNING", gpu1: "ERROR", nic0: "RUNNING", vgpu0: "STOP" })
    })
  )

  it.effect("under reset, a device in ERROR is reset and goes home like the others; RESUMING is left by a reset", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(mixed)
      const t = recoveryTargets(
        group,
        "reset",
        "RUNNING",
        { gpu0: "ERROR", gpu1: "RESUMING", nic0: "STOP_COPY", vgpu0: "RUNNING" },
        false
      )
      expect(t.quarantined).toEqual([])
      expect(t.reset).toEqual(["gpu0", "gpu1"])
      expect(t.required).toEqual({ gpu0: "RUNNING", gpu1: "RUNNING", nic0: "RUNNING", vgpu0: "RUNNING" })
    })
  )
})

/** A device that refuses DEVICE_RESET in STOP and STOP_COPY (EINVAL), as libvfio-user does. */
const refusesResetWhenStopped = (device: SimDevice): Device => ({
  ...device,
  reset: Effect.flatMap(device.getState, (state) =>
    state === "STOP" || state === "STOP_COPY"
      ? Effect.fail(DeviceError.resetFailed({ device: device.id, code: "EINVAL", reason: `refused in ${state}` }))
      : device.reset
  )
})

describe("recoverGroup", () => {
  it.effect("a destination device already in STOP whose reset is refused counts as parked", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const runtime = wrapDevices(pair.destination, refusesResetWhenStopped)
      const o = resolveSession({})
      const out = yield* runOnVirtualTime(
        recoverGroup(runtime, {
          policy: "reset",
          home: "STOP",
          resetEvery: true,
          resetTimeoutMs: 1000,
          transition: transitionOptions(o, "destination", "park", undefined)
        })
      )
      expect(out.states).toEqual({ gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" })
      expect(out.complete).toBe(true)
      expect(out.problem).toBeUndefined()
    })
  )

  it.effect("a refused reset that leaves a device where it must not stay is a failure", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      // gpu0 is in RESUMING, which only a reset leaves, and its reset fails.
      const gpu0 = pair.destination.devices.get("gpu0")
      if (gpu0 === undefined) return yield* Effect.die("no gpu0")
      yield* runOnVirtualTime(gpu0.setState("RESUMING"))
      const runtime = wrapDevices(pair.destination, (d) =>
        d.id === "gpu0"
          ? { ...d, reset: Effect.fail(DeviceError.resetFailed({ device: d.id, code: "EIO", reason: "broken" })) }
          : d
      )
      const out = yield* runOnVirtualTime(
        recoverGroup(runtime, {
          policy: "reset",
          home: "STOP",
          resetEvery: true,
          resetTimeoutMs: 1000,
          transition: transitionOptions(resolveSession({}), "destination", "park", undefined)
        })
      )
      expect(out.problem).toContain("the reset of gpu0 failed")
      expect(out.problem).not.toContain("\n")
    })
  )

  it.effect(
    "end to end: a destination failing after validation, its resets refused in STOP, reports itself parked",
    () =>
      Effect.gen(function* () {
        const pair = yield* runOnVirtualTime(makePair(threeGpus))
        const out = yield* runOnVirtualTime(
          migrate(pair, {
            runtimes: { destination: wrapDevices(pair.destination, refusesResetWhenStopped) },
            destination: { beforeVote: Effect.fail({ message: "the VM's memory did not load" }) }
          })
        )
        const error = yield* failureOf(out.destination)
        expect(error.phase).toBe("validate")
        expect(error.recovered).toBe(true)
        expect(error.recoveryProblem).toBeUndefined()
        expect(error.message).toContain("the destination devices were reset and parked in STOP")
        expect(error.message).not.toContain("recovery incomplete")
        expect(yield* statesOf(pair.destination)).toEqual({ gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" })
      })
  )
})
