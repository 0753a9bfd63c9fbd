import {
  decodeGroup,
  fromPromiseDevice,
  GroupError,
  LockstepGroup,
  type PromiseDevice,
  TransitionFailed
} from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { makeSimDevice, type SimDevice, simulateGroup } from "@lockstep/sim"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"

/** A VMM-side device object that knows nothing of Effect: Promises over a simulated device. */
const promiseDevice = (d: SimDevice): PromiseDevice => ({
  id: d.id,
  kind: d.kind,
  flags: d.flags,
  getState: () => Effect.runPromise(d.getState),
  setState: (to: State) => Effect.runPromise(d.setState(to)),
  read: (n) => Effect.runPromise(d.read(n)),
  write: (data) => Effect.runPromise(d.write(data)),
  precopyInfo: () => Effect.runPromise(d.precopyInfo),
  stopCopyLength: () => Effect.runPromise(d.stopCopyLength),
  reset: () => Effect.runPromise(d.reset)
})

const doc = (faults: unknown = undefined) => ({
  devices: ["gpu0", "gpu1", "gpu2"].map((id) => ({
    id,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: { arcLatencyMs: 0, ...(id === "gpu2" && faults !== undefined ? { faults } : {}) }
  }))
})

const setUp = async (faults?: unknown) => {
  const group = await Effect.runPromise(decodeGroup(doc(faults)))
  const sim = await Effect.runPromise(simulateGroup(group))
  const lockstep = new LockstepGroup(group, [...sim.devices.values()].map(promiseDevice))
  const states = () => Promise.all([...sim.devices.values()].map((d) => Effect.runPromise(d.getState)))
  return { sim, lockstep, states }
}

describe("LockstepGroup (Promise facade)", () => {
  it("runs the named steps of a source migration", async () => {
    const { sim, lockstep, states } = await setUp()
    await lockstep.beginPrecopy()
    expect(await states()).toEqual(["PRE_COPY", "PRE_COPY", "PRE_COPY"])
    await lockstep.quiesce()
    expect(await states()).toEqual(["PRE_COPY_P2P", "PRE_COPY_P2P", "PRE_COPY_P2P"])
    const report = await lockstep.enterStopCopy()
    expect(report.to).toEqual({ gpu0: "STOP_COPY", gpu1: "STOP_COPY", gpu2: "STOP_COPY" })
    await lockstep.transition("RUNNING")
    expect(await states()).toEqual(["RUNNING", "RUNNING", "RUNNING"])
    await Effect.runPromise(sim.fabric.assertNoViolations)
  })

  it("rejects with the typed failure after rolling back", async () => {
    const { sim, lockstep, states } = await setUp([{ _tag: "FailArc", from: "RUNNING_P2P", to: "STOP" }])
    const failure = await lockstep.stop().then(
      () => undefined,
      (e: unknown) => e
    )
    expect(failure).toBeInstanceOf(TransitionFailed)
    expect((failure as TransitionFailed).device).toBe("gpu2")
    expect((failure as TransitionFailed).rolledBack).toBe(true)
    expect(await states()).toEqual(["RUNNING", "RUNNING", "RUNNING"])
    await Effect.runPromise(sim.fabric.assertNoViolations)
  })

  it("turns a plain rejection of setState into ArcFailed with the state read back", async () => {
    const { sim } = await setUp()
    const devices = [...sim.devices.values()].map(promiseDevice)
    const flaky: PromiseDevice = {
      ...(devices[1] as PromiseDevice),
      setState: () => Promise.reject(new Error("bus error"))
    }
    const group = await Effect.runPromise(decodeGroup(doc()))
    const broken = new LockstepGroup(group, [devices[0] as PromiseDevice, flaky, devices[2] as PromiseDevice])
    const failure = (await broken.stop().catch((e: unknown) => e)) as TransitionFailed
    expect(failure.cause._tag === "DeviceError" && failure.cause.reason._tag).toBe("ArcFailed")
    expect(failure.cause.message).toContain("bus error")
    expect(failure.finalStates).toEqual({ gpu0: "RUNNING", gpu1: "RUNNING", gpu2: "RUNNING" })
    await Effect.runPromise(sim.fabric.assertNoViolations)
  })
})

describe("LockstepGroup.fromDocument", () => {
  it("rejects an invalid document with a GroupError, reason InvalidGroup, naming the path", async () => {
    const failure = await LockstepGroup.fromDocument({ devices: [{ id: "gpu0", kind: "gpu", flags: [] }] }, []).catch(
      (e: unknown) => e
    )
    expect(failure).toBeInstanceOf(GroupError)
    expect((failure as GroupError).reason._tag).toBe("InvalidGroup")
    expect(String((failure as Error).message)).toContain("devices[0].kind")
  })

  it("passes a device's pre-copy info v2 opt-in and full-stop quiesce through; without them, declines", async () => {
    const sim = await Effect.runPromise(makeSimDevice("xe0", { precopyInfoV2: true, p2pQuiesceIsStop: true }))
    const plain = fromPromiseDevice(promiseDevice(sim))
    expect(plain.enablePrecopyInfoV2).toBeUndefined()
    expect(plain.p2pQuiesceIsStop).toBeUndefined()
    const xe = fromPromiseDevice({
      ...promiseDevice(sim),
      enablePrecopyInfoV2: () => Effect.runPromise(sim.enablePrecopyInfoV2 ?? Effect.succeed(false)),
      p2pQuiesceIsStop: true
    })
    expect(await Effect.runPromise(xe.enablePrecopyInfoV2 ?? Effect.succeed(false))).toBe(true)
    expect(xe.p2pQuiesceIsStop).toBe(true)
  })
})
