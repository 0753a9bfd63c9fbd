import { describe, expect, it } from "@effect/vitest"
import { arcLatency, compareMemory, makeSimDevice, resolveSimDeviceConfig, type SimDeviceConfig } from "@lockstep/sim"
import { Effect, Fiber } from "effect"
import { pump, walk } from "./Transfer.js"
import { elapse, now } from "./VirtualTime.js"

/*
 * Pre-copy info v2 (kernel series of 2026): a device reports VFIO_PRECOPY_INFO_REINIT only after
 * the opt-in; with it, initial_bytes counts new initial data afresh and dirty_bytes restarts
 * from 0. And full-stop quiesce (Intel xe): the P2P quiesce arc costs the stop arc's latency.
 */

/** 16 pages of 64 bytes, the last one 42 bytes long. */
const small: SimDeviceConfig = { stateSize: 1002, pageSize: 64, dirtyBytesPerSecond: 0, arcLatencyMs: 0 }
/** The page records of the whole state (16 record headers of 12 bytes, and the bytes): the pre-copy portion. */
const pageRecords = 16 * 12 + 1002
/** The stream's header. */
const header = 24

describe("pre-copy info v2", () => {
  it.effect("a device without it declines the opt-in and never reports REINIT, whatever reinitAtQuery says", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, reinitAtQuery: 2 })
      expect(yield* device.enablePrecopyInfoV2 ?? Effect.succeed(false)).toBe(false)
      expect(yield* device.reinitialise).toBe(false)
      yield* device.setState("PRE_COPY")
      for (let q = 0; q < 4; q++) expect((yield* device.precopyInfo).reinit).toBeUndefined()
    })
  )

  it.effect("after the opt-in, the configured query reports REINIT with the whole pre-copy portion due again", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, precopyInfoV2: true, reinitAtQuery: 3 })
      expect(yield* device.enablePrecopyInfoV2 ?? Effect.succeed(false)).toBe(true)
      yield* device.setState("PRE_COPY")
      expect(yield* device.precopyInfo).toEqual({ initialBytes: header + pageRecords, dirtyBytes: 0 })
      const destination = yield* makeSimDevice("e", small)
      yield* walk(destination, "RESUMING")
      expect(yield* pump(device, destination, 100)).toBe(header + pageRecords)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      // Query 3: new initial data, every page record again (the header went once), no dirty bytes.
      expect(yield* device.precopyInfo).toEqual({ initialBytes: pageRecords, dirtyBytes: 0, reinit: true })
      expect(yield* device.precopyInfo).toEqual({ initialBytes: pageRecords, dirtyBytes: 0 })
      expect(yield* pump(device, destination, 100)).toBe(pageRecords)
      // The stream stays whole: the destination resumes to an identical copy.
      yield* walk(device, "STOP_COPY")
      yield* pump(device, destination, 100)
      yield* destination.setState("STOP")
      expect((yield* compareMemory(device, destination))._tag).toBe("Identical")
    })
  )

  it.effect("reinitialise makes the next query report REINIT, and STOP_COPY owes the pages again", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, precopyInfoV2: true })
      yield* device.enablePrecopyInfoV2 ?? Effect.void
      yield* device.setState("PRE_COPY")
      const destination = yield* makeSimDevice("e", small)
      yield* walk(destination, "RESUMING")
      yield* pump(device, destination, 1000)
      // Everything sent: STOP_COPY owes only the trailer (12 bytes).
      expect(yield* device.stopCopyLength).toBe(12)
      expect(yield* device.reinitialise).toBe(true)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: pageRecords, dirtyBytes: 0, reinit: true })
      expect(yield* device.stopCopyLength).toBe(pageRecords + 12)
    })
  )
})

describe("full-stop quiesce", () => {
  const latencies = {
    "RUNNING>RUNNING_P2P": 1,
    "RUNNING_P2P>STOP": 7,
    "PRE_COPY>PRE_COPY_P2P": 2,
    "PRE_COPY_P2P>STOP_COPY": 9
  }

  it("a quiesce arc costs the stop arc after it; every other arc keeps its own latency", () => {
    const stop = resolveSimDeviceConfig({ arcLatenciesMs: latencies, p2pQuiesceIsStop: true })
    const plain = resolveSimDeviceConfig({ arcLatenciesMs: latencies })
    expect(arcLatency(stop, { from: "RUNNING", to: "RUNNING_P2P" })).toBe(7)
    expect(arcLatency(stop, { from: "PRE_COPY", to: "PRE_COPY_P2P" })).toBe(9)
    expect(arcLatency(plain, { from: "RUNNING", to: "RUNNING_P2P" })).toBe(1)
    expect(arcLatency(plain, { from: "PRE_COPY", to: "PRE_COPY_P2P" })).toBe(2)
    expect(arcLatency(stop, { from: "RUNNING_P2P", to: "STOP" })).toBe(7)
    expect(arcLatency(stop, { from: "RUNNING_P2P", to: "RUNNING" })).toBe(1)
  })

  it.effect("the simulated arc takes that long in virtual time, and the device declares it", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("xe", { arcLatenciesMs: latencies, p2pQuiesceIsStop: true })
      expect(device.p2pQuiesceIsStop).toBe(true)
      const start = yield* now
      const arc = yield* Effect.forkChild(device.setState("RUNNING_P2P"))
      yield* elapse(6)
      expect(arc.pollUnsafe()).toBeUndefined()
      yield* elapse(1)
      yield* Fiber.join(arc)
      expect((yield* now) - start).toBe(7)
      expect(yield* device.getState).toBe("RUNNING_P2P")
    })
  )
})
