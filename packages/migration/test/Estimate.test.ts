import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, enterStopCopyPlan, resumePlan } from "@lockstep/coordinator"
import { type Device, DeviceError } from "@lockstep/device"
import {
  ArcTimings,
  criticalPathMs,
  describeAssumedLengths,
  estimateDowntime,
  PessimisticStopCopyLength,
  StopCopyLengths
} from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect, Result } from "effect"
import { type GroupDoc, makePair, migrate, successOf, threeGpus } from "./Harness.js"

/**
 * Four GPUs with much dirtied state, so that a good part of the downtime is the stop-copy
 * transfer, and one arc latency, so that the arcs run during pre-copy predict the switchover's.
 */
const busyGpus: GroupDoc = {
  devices: ["gpu0", "gpu1", "gpu2", "gpu3"].map((id) => ({
    id,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: {
      stateSize: 8 * 1024 * 1024,
      precopyInitialBytes: 6 * 1024 * 1024,
      dirtyBytesPerSecond: 64 * 1024 * 1024,
      arcLatencyMs: 2
    }
  })),
  topology: "shared-iommu"
}

const withNic = {
  devices: [
    ...threeGpus.devices,
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "ccw0", kind: "ccw", flags: ["STOP_COPY"] }
  ],
  topology: "shared-iommu"
}

describe("Estimate", () => {
  it.effect("the critical path of a switchover is the longest chain of arcs, barriers taking no time", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(withNic)
      const from = { gpu0: "PRE_COPY", gpu1: "PRE_COPY", gpu2: "PRE_COPY", nic0: "RUNNING", ccw0: "RUNNING" } as const
      const plan = enterStopCopyPlan(group, from)
      if (Result.isFailure(plan)) return yield* Effect.die(plan.failure)
      // gpus: PRE_COPY → PRE_COPY_P2P → STOP_COPY; nic0: RUNNING → RUNNING_P2P → STOP → STOP_COPY; ccw0 alone.
      expect(criticalPathMs(plan.success, () => 2)).toBe(6)
      const slowGpu = (device: string) => (device === "gpu1" ? 10 : 1)
      expect(criticalPathMs(plan.success, slowGpu)).toBe(20)
      // Quiescing is a barrier: a slow quiesce of gpu1 holds every device's stop, not only its own.
      const slowQuiesce = (device: string, arc: { readonly to: string }) =>
        device === "gpu1" && arc.to === "PRE_COPY_P2P" ? 10 : 1
      expect(criticalPathMs(plan.success, slowQuiesce)).toBe(12)
      const resume = resumePlan(group, "STOP")
      if (Result.isFailure(resume)) return yield* Effect.die(resume.failure)
      expect(criticalPathMs(resume.success, () => 3)).toBe(6)
    })
  )

  it("adds the parts of the estimate as its formula says", () => {
    const e = estimateDowntime({
      switchoverMs: 4,
      remainingBytes: 1024 * 1024,
      bandwidth: 100 * 1024 * 1024,
      oneWayMs: 0.5,
      journalMs: 1,
      resumeMs: 6
    })
    expect(e).toEqual({
      totalMs: 4 + 10 + 2.5 + 6,
      switchoverMs: 4,
      transferMs: 10,
      channelMs: 2.5,
      resumeMs: 6,
      remainingBytes: 1024 * 1024,
      bandwidth: 100 * 1024 * 1024,
      dirtyBytesPerSecond: 0,
      assumed: []
    })
    expect(
      estimateDowntime({ ...e, oneWayMs: 0, journalMs: 0, remainingBytes: 0, bandwidth: Number.POSITIVE_INFINITY })
        .transferMs
    ).toBe(0)
    // The devices run through the switchover arcs: what they dirty meanwhile is sent too.
    // 4 ms at 250 MiB/s is 1 MiB more: 2 MiB at 100 MiB/s.
    const dirtying = estimateDowntime({ ...e, oneWayMs: 0.5, journalMs: 1, dirtyBytesPerSecond: 250 * 1024 * 1024 })
    expect(dirtying.transferMs).toBeCloseTo(20, 9)
    expect(dirtying.totalMs).toBeCloseTo(4 + 20 + 2.5 + 6, 9)
    expect(dirtying.remainingBytes).toBe(1024 * 1024)
  })

  it("learns arc latencies, falling back to the device's mean, the group's mean, then the assumption", () => {
    const t = new ArcTimings(7)
    const arc = { from: "PRE_COPY", to: "PRE_COPY_P2P" } as const
    expect(t.latency("gpu0", arc)).toBe(7)
    t.observe({ _tag: "ArcStarted", id: "a1", device: "gpu0", arc: { from: "RUNNING", to: "PRE_COPY" }, at: 10 })
    t.observe({ _tag: "ArcDone", id: "a1", device: "gpu0", arc: { from: "RUNNING", to: "PRE_COPY" }, at: 14 })
    t.observe({ _tag: "ArcStarted", id: "a2", device: "gpu1", arc, at: 10 })
    t.observe({ _tag: "ArcDone", id: "a2", device: "gpu1", arc, at: 12 })
    expect(t.latency("gpu1", arc)).toBe(2)
    expect(t.latency("gpu0", arc)).toBe(4)
    expect(t.latency("nic0", arc)).toBe(3)
  })

  it.effect("the estimate at the switchover is within 25% of the measured downtime when stop-copy data dominates", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(busyGpus))
      const out = yield* runOnVirtualTime(
        migrate(pair, { source: { bandwidthLimit: 500_000_000, downtimeLimitMs: 200 } })
      )
      const source = yield* successOf(out.source)
      const decided = out.events.flatMap((e) => (e._tag === "SwitchoverDecided" ? [e] : []))
      const estimate = source.estimate
      const downtimeMs = source.downtimeMs
      if (estimate === undefined || downtimeMs === undefined) return yield* Effect.die("no estimate or no downtime")
      expect(decided[0]?.estimateMs).toBe(estimate.totalMs)
      // The stop-copy transfer is most of the downtime, and the estimate counts it.
      const stopCopyBytes = Object.values(source.devices).reduce((n, d) => n + d.stopCopyBytes, 0)
      expect(((stopCopyBytes / 500_000_000) * 1000) / downtimeMs).toBeGreaterThan(0.5)
      const sent = estimate.remainingBytes + (estimate.dirtyBytesPerSecond * estimate.switchoverMs) / 1000
      expect(estimate.transferMs).toBeCloseTo((sent / Math.min(500_000_000, estimate.bandwidth)) * 1000, 6)
      expect(estimate.bandwidth).toBeLessThanOrEqual(500_000_000)
      expect(estimate.totalMs).toBeGreaterThanOrEqual(estimate.switchoverMs + estimate.transferMs + estimate.resumeMs)
      expect(Math.abs(estimate.totalMs - downtimeMs) / downtimeMs).toBeLessThanOrEqual(0.25)
    })
  )
})

/** A device that cannot tell its stop-copy length (answers `code`), counting how often it is asked. */
const untold = (id: string, code: string, estimate?: number) => {
  const asked = { count: 0 }
  const failure = DeviceError.sessionFailed({
    device: id,
    operation: "stopCopyLength",
    code,
    reason: "no",
    state: "RUNNING"
  })
  const unused = Effect.die(new Error("not used by the estimate"))
  const device: Device = {
    id,
    kind: "pci",
    flags: 1,
    getState: Effect.succeed("RUNNING"),
    setState: () => unused,
    read: () => unused,
    write: () => unused,
    precopyInfo: unused,
    stopCopyLength: Effect.suspend(() => {
      asked.count++
      return Effect.fail(failure)
    }),
    ...(estimate === undefined ? {} : { stopCopyLengthEstimate: estimate }),
    reset: unused
  }
  return { device, asked }
}

describe("stop-copy lengths a device cannot tell", () => {
  it.effect("are the device's estimate, or else the pessimistic default, each asked for once", () =>
    Effect.gen(function* () {
      const lengths = new StopCopyLengths()
      const estimated = untold("nvme0", "EOPNOTSUPP", 4096)
      const unknown = untold("nvme1", "EOPNOTSUPP")
      for (let i = 0; i < 3; i++) {
        expect(yield* lengths.of(estimated.device)).toBe(4096)
        expect(yield* lengths.of(unknown.device)).toBe(PessimisticStopCopyLength)
      }
      expect([estimated.asked.count, unknown.asked.count]).toEqual([1, 1])
      expect(lengths.assumed).toEqual([
        { device: "nvme0", bytes: 4096, source: "estimate" },
        { device: "nvme1", bytes: 100 * 2 ** 30, source: "pessimistic" }
      ])
      expect(lengths.isAssumed("nvme0")).toBe(true)
    })
  )

  it.effect("are not assumed when the device failed for another reason: that failure stands", () =>
    Effect.gen(function* () {
      const lengths = new StopCopyLengths()
      const broken = untold("gpu0", "EIO", 4096)
      expect(yield* Effect.flip(lengths.of(broken.device))).toMatchObject({
        reason: { _tag: "SessionFailed", code: "EIO" }
      })
      expect(lengths.assumed).toEqual([])
    })
  )

  it("make the estimate unbounded when one is unknown, and count like a report when estimated", () => {
    const inputs = { switchoverMs: 2, remainingBytes: 1000, bandwidth: 1e6, oneWayMs: 0, journalMs: 0, resumeMs: 1 }
    const estimated = estimateDowntime({ ...inputs, assumed: [{ device: "nvme0", bytes: 500, source: "estimate" }] })
    // 1000 bytes at 1 MB/s = 1 ms of transfer.
    expect([estimated.transferMs, estimated.totalMs]).toEqual([1, 4])
    const unknown = estimateDowntime({
      ...inputs,
      assumed: [{ device: "nvme1", bytes: PessimisticStopCopyLength, source: "pessimistic" }]
    })
    expect(unknown.totalMs).toBe(Number.POSITIVE_INFINITY)
    // Even with nothing limiting or measuring the bandwidth: an unknown size is never "fast".
    expect(estimateDowntime({ ...inputs, bandwidth: Number.POSITIVE_INFINITY, assumed: unknown.assumed }).totalMs).toBe(
      Number.POSITIVE_INFINITY
    )
    expect(describeAssumedLengths([])).toBeUndefined()
    expect(describeAssumedLengths([...estimated.assumed, ...unknown.assumed])).toBe(
      "stop-copy length not reported by the device, assumed: nvme0 500 bytes (its stopCopyLengthEstimate); nvme1 unknown (no estimate given: 107374182400 bytes assumed, so the downtime estimate is unbounded)"
    )
  })
})
