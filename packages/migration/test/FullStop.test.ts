import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, enterStopCopyPlan } from "@lockstep/coordinator"
import type { Arc } from "@lockstep/fsm"
import { ArcTimings, criticalPathMs } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect, Result } from "effect"
import { assertNeverBothRun, assertSafe, type GroupDoc, makePair, migrate, successOf } from "./Harness.js"

/*
 * Drivers whose P2P quiesce is a full stop (Intel xe implements RUNNING_P2P by stopping the
 * device): the quiesce is safe but costs what the stop after it costs, and the downtime estimate
 * counts it so. Expected figures come from that rule applied by hand to the latencies below.
 */

/** Two GPUs writing into each other: `xe0` quiesces by stopping (20 ms), `gpu1` is ordinary. */
const xeDoc = (fullStop: boolean): GroupDoc => ({
  devices: [
    {
      id: "xe0",
      kind: "pci",
      flags: ["STOP_COPY", "P2P", "PRE_COPY"],
      sim: {
        stateSize: 64 * 1024,
        dirtyBytesPerSecond: 0,
        arcLatencyMs: 2,
        arcLatenciesMs: { "PRE_COPY_P2P>STOP_COPY": 20 },
        p2pQuiesceIsStop: fullStop
      }
    },
    {
      id: "gpu1",
      kind: "pci",
      flags: ["STOP_COPY", "P2P", "PRE_COPY"],
      sim: {
        stateSize: 64 * 1024,
        dirtyBytesPerSecond: 0,
        arcLatencyMs: 2,
        arcLatenciesMs: { "PRE_COPY_P2P>STOP_COPY": 5 }
      }
    }
  ],
  topology: "shared-iommu"
})

const observe = (t: ArcTimings, device: string, arc: Arc, from: number, to: number) => {
  const id = `${device}:${arc.from}>${arc.to}`
  t.observe({ _tag: "ArcStarted", id, device, arc, at: from })
  t.observe({ _tag: "ArcDone", id, device, arc, at: to })
}

describe("full-stop quiesce", () => {
  it.effect("the estimate times a full-stop device's quiesce as its stop", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(xeDoc(true))
      const plan = enterStopCopyPlan(group, { xe0: "PRE_COPY", gpu1: "PRE_COPY" })
      if (Result.isFailure(plan)) return yield* Effect.die(plan.failure)
      const learnt = (fullStop: boolean) => {
        const t = new ArcTimings(1, (id) => fullStop && id === "xe0")
        observe(t, "xe0", { from: "RUNNING", to: "PRE_COPY" }, 0, 2)
        observe(t, "xe0", { from: "PRE_COPY_P2P", to: "STOP_COPY" }, 10, 30)
        observe(t, "gpu1", { from: "RUNNING", to: "PRE_COPY" }, 0, 2)
        observe(t, "gpu1", { from: "PRE_COPY_P2P", to: "STOP_COPY" }, 10, 15)
        return t
      }
      const quiesce = { from: "PRE_COPY", to: "PRE_COPY_P2P" } as const
      // Ordinary: an arc not seen is the device's mean, (2 + 20) / 2 for xe0, (2 + 5) / 2 for gpu1.
      const plain = learnt(false)
      expect(plain.latency("xe0", quiesce)).toBe(11)
      // Full stop: xe0's quiesce is its stop arc, 20 ms.
      const stop = learnt(true)
      expect(stop.latency("xe0", quiesce)).toBe(20)
      expect(stop.latency("gpu1", quiesce)).toBe(3.5)
      // Each stop waits for both quiesces (the GPUs write into each other): the longest quiesce,
      // then the longest stop.
      expect(criticalPathMs(plan.success, (d, a) => plain.latency(d, a))).toBe(11 + 20)
      expect(criticalPathMs(plan.success, (d, a) => stop.latency(d, a))).toBe(20 + 20)
    })
  )

  it.effect("a full-stop device's quiesce seen first times its stop arc too", () =>
    Effect.sync(() => {
      const t = new ArcTimings(1, () => true)
      observe(t, "xe0", { from: "RUNNING", to: "RUNNING_P2P" }, 0, 9)
      expect(t.latency("xe0", { from: "RUNNING_P2P", to: "STOP" })).toBe(9)
      // The restart is no stop: it keeps the device's mean.
      observe(t, "xe0", { from: "RUNNING", to: "PRE_COPY" }, 0, 1)
      expect(t.latency("xe0", { from: "RUNNING_P2P", to: "RUNNING" })).toBe(5)
    })
  )

  it.effect("migrated, the switchover's critical path pays the stop twice on the full-stop device", () =>
    Effect.gen(function* () {
      for (const fullStop of [false, true]) {
        const pair = yield* runOnVirtualTime(makePair(xeDoc(fullStop)))
        const out = yield* runOnVirtualTime(migrate(pair, { source: { bandwidthLimit: 4 * 1024 * 1024 } }))
        const summary = yield* successOf(out.source)
        expect(out.verified).toEqual([true, true])
        yield* assertNeverBothRun(pair)
        yield* assertSafe(pair)
        // Quiesce (xe0: 20 ms as a full stop, else 2 ms; gpu1 2 ms), then the longest stop (20 ms).
        expect(summary.switchoverCriticalPathMs).toBe((fullStop ? 20 : 2) + 20)
      }
    })
  )
})
