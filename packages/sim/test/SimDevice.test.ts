import { describe, expect, it } from "@effect/vitest"
import type { DeviceError } from "@lockstep/device"
import { AllFlagSets, arcsFor, flagsOf, isArc, path, type State, States } from "@lockstep/fsm"
import {
  compareMemory,
  makeSimDevice,
  memoryDigest,
  type SimDevice,
  type SimDeviceConfig,
  type SimEvent
} from "@lockstep/sim"
import { Effect, Fiber, Result } from "effect"
import { pump, readAll, walk } from "./Transfer.js"
import { elapse, now, untilDone } from "./VirtualTime.js"

/** 16 pages of 64 bytes, the last one 42 bytes long, with 2 bytes past the last whole word. */
const small: SimDeviceConfig = { stateSize: 1002, pageSize: 64, dirtyBytesPerSecond: 0, arcLatencyMs: 0 }
/** Stream size of `small`: header, 16 record headers and the bytes, trailer. */
const smallStream = 24 + 16 * 12 + 1002 + 12

/** The reason a device operation failed with, by tag, or `ok`. */
const errorTag = <A>(effect: Effect.Effect<A, DeviceError>) =>
  Effect.map(Effect.result(effect), (r) => (Result.isFailure(r) ? r.failure.reason._tag : "ok"))

/** A complete saved stream of a device with `config`. */
const savedStream = (config: SimDeviceConfig) =>
  Effect.gen(function* () {
    const source = yield* makeSimDevice("source", config)
    yield* walk(source, "STOP_COPY")
    return yield* readAll(source, 1 << 20)
  })

describe("arcs", () => {
  it.effect("accepts exactly the legal arcs of each flag set, from every state it can reach", () =>
    Effect.gen(function* () {
      for (const flags of AllFlagSets) {
        let legal = 0
        for (const from of States) {
          if (from === "ERROR" || Result.isFailure(path("RUNNING", from, flags))) continue
          for (const to of States) {
            const device = yield* makeSimDevice("d", { ...small, flags })
            yield* walk(device, from)
            if (from === "RESUMING") yield* device.write(yield* savedStream({ ...small, flags }))
            const outcome = yield* Effect.result(device.setState(to))
            if (isArc(flags, from, to)) {
              legal++
              expect(Result.isSuccess(outcome), `${from}→${to} flags ${flags}`).toBe(true)
              expect(yield* device.getState).toBe(to)
            } else {
              const failure = Result.isFailure(outcome) ? outcome.failure : undefined
              expect(failure?.reason._tag, `${from}→${to} flags ${flags}`).toBe("ArcRejected")
              expect(failure?.reason).toMatchObject({ device: "d", arc: { from, to }, code: "EINVAL" })
              expect(yield* device.getState).toBe(from)
            }
          }
        }
        expect(legal).toBe(arcsFor(flags).length)
      }
    })
  )

  it.effect("rejects everything from ERROR; only a reset leaves it, to RUNNING", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, faults: [{ _tag: "FailArc", leaveIn: "error" }] })
      expect(yield* errorTag(device.setState("RUNNING_P2P"))).toBe("ArcFailed")
      expect(yield* device.getState).toBe("ERROR")
      for (const to of States) expect(yield* errorTag(device.setState(to))).toBe("ArcRejected")
      yield* device.reset
      expect(yield* device.getState).toBe("RUNNING")
      yield* device.setState("RUNNING_P2P")
    })
  )

  it.effect("takes each arc's latency on virtual time and is in flight meanwhile", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", {
        ...small,
        arcLatencyMs: 2,
        arcLatenciesMs: { "RUNNING>RUNNING_P2P": 5 }
      })
      const fiber = yield* Effect.forkChild(walk(device, "STOP"))
      yield* elapse(3)
      expect(yield* device.status).toEqual({ state: "RUNNING", inFlight: { from: "RUNNING", to: "RUNNING_P2P" } })
      expect(yield* device.getState).toBe("RUNNING")
      const busy = yield* Effect.result(device.setState("PRE_COPY"))
      expect(Result.isFailure(busy) && busy.failure).toMatchObject({ reason: { _tag: "ArcRejected", code: "EBUSY" } })
      yield* elapse(2)
      expect(yield* device.status).toEqual({
        state: "RUNNING_P2P",
        inFlight: { from: "RUNNING_P2P", to: "STOP" }
      })
      yield* elapse(2)
      yield* Fiber.join(fiber)
      expect(yield* device.status).toEqual({ state: "STOP" })
      expect(yield* now).toBe(7)
    })
  )

  it.effect("reports every arc start and end with its virtual time", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, arcLatencyMs: 3 })
      const events: Array<SimEvent> = []
      const stop = device.observe((e) => events.push(e))
      yield* untilDone(walk(device, "STOP"))
      yield* device.reset
      stop()
      yield* untilDone(device.setState("RUNNING_P2P"))
      expect(events.map((e) => [e._tag, e.at, e.state])).toEqual([
        ["ArcStarted", 0, "RUNNING"],
        ["ArcCompleted", 3, "RUNNING_P2P"],
        ["ArcStarted", 3, "RUNNING_P2P"],
        ["ArcCompleted", 6, "STOP"],
        ["Reset", 6, "RUNNING"]
      ])
    })
  )
})

describe("data sessions", () => {
  it.effect("refuses data operations outside their states", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", small)
      const refused = (e: Effect.Effect<unknown, DeviceError>) =>
        Effect.map(Effect.result(e), (r) => (Result.isFailure(r) ? r.failure.reason : undefined))
      expect(yield* refused(device.read(100))).toMatchObject({
        _tag: "SessionFailed",
        operation: "read",
        code: "EINVAL"
      })
      expect(yield* refused(device.write(new Uint8Array(4)))).toMatchObject({ operation: "write", code: "EINVAL" })
      expect(yield* refused(device.precopyInfo)).toMatchObject({ operation: "precopyInfo", state: "RUNNING" })
      yield* walk(device, "STOP_COPY")
      expect(yield* refused(device.precopyInfo)).toMatchObject({ operation: "precopyInfo", state: "STOP_COPY" })
      expect(yield* refused(device.write(new Uint8Array(4)))).toMatchObject({ operation: "write" })
      expect(yield* refused(device.read(0))).toMatchObject({ operation: "read", code: "EINVAL" })
      yield* walk(device, "RESUMING")
      expect(yield* refused(device.read(100))).toMatchObject({ operation: "read", state: "RESUMING" })
    })
  )

  it.effect("pre-copy answers NoData, never End; STOP_COPY sends the rest, then End", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", small)
      yield* device.setState("PRE_COPY")
      expect(yield* device.precopyInfo).toEqual({ initialBytes: smallStream - 12, dirtyBytes: 0 })
      const first = yield* device.read(100)
      expect(first._tag === "Chunk" && first.data.length).toBe(100)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: smallStream - 112, dirtyBytes: 0 })
      expect((yield* readAll(device, 77)).length).toBe(smallStream - 112)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      expect(yield* device.read(100)).toEqual({ _tag: "NoData" })
      expect(yield* device.read(100)).toEqual({ _tag: "NoData" })
      yield* device.setState("PRE_COPY_P2P")
      expect(yield* device.read(100)).toEqual({ _tag: "NoData" })
      expect(yield* device.stopCopyLength).toBe(12)
      yield* device.setState("STOP_COPY")
      const trailer = yield* device.read(100)
      expect(trailer._tag === "Chunk" && trailer.data.length).toBe(12)
      expect(yield* device.read(100)).toEqual({ _tag: "End" })
      expect(yield* device.read(100)).toEqual({ _tag: "End" })
      expect(yield* device.stopCopyLength).toBe(0)
    })
  )

  it.effect("stopCopyLength is exactly what STOP_COPY then sends", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, dirtyBytesPerSecond: 64_000 })
      expect(yield* device.stopCopyLength).toBe(smallStream)
      yield* device.setState("PRE_COPY")
      yield* device.read(300)
      yield* elapse(4)
      const expected = yield* device.stopCopyLength
      yield* walk(device, "STOP_COPY")
      expect((yield* readAll(device, 50)).length).toBe(expected)
    })
  )

  it.effect("pre-copy tracks pages dirtied by the device itself and re-sends them", () =>
    Effect.gen(function* () {
      // 1 page of 64 bytes per ms; every record is 76 bytes.
      const device = yield* makeSimDevice("d", {
        ...small,
        stateSize: 1024,
        dirtyBytesPerSecond: 64_000
      })
      yield* device.setState("PRE_COPY")
      yield* readAll(device, 4096)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      yield* elapse(5)
      const { dirtyBytes } = yield* device.precopyInfo
      expect(dirtyBytes).toBeGreaterThan(0)
      expect(dirtyBytes).toBeLessThanOrEqual(5 * 76)
      expect(dirtyBytes % 76).toBe(0)
      const resent = yield* readAll(device, 30)
      expect(resent.length).toBe(dirtyBytes)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      yield* device.setState("PRE_COPY_P2P")
      yield* elapse(5)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
    })
  )

  it.effect("precopyInitialBytes limits pre-copy; the rest moves in STOP_COPY", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, precopyInitialBytes: 130 })
      yield* device.setState("PRE_COPY")
      // 130 bytes round up to 3 pages.
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 24 + 3 * 76, dirtyBytes: 0 })
      expect((yield* readAll(device, 1000)).length).toBe(24 + 3 * 76)
      yield* walk(device, "STOP_COPY")
      expect((yield* readAll(device, 1000)).length).toBe(smallStream - 24 - 3 * 76)
    })
  )

  it.effect("a save → restore round trip rebuilds memory byte for byte", () =>
    Effect.gen(function* () {
      const config: SimDeviceConfig = { stateSize: 50_001 * 4 + 3, pageSize: 4096, dirtyBytesPerSecond: 2_000_000 }
      const source = yield* makeSimDevice("gpu0", config)
      const destination = yield* makeSimDevice("gpu0-dst", config)
      expect((yield* compareMemory(source, destination))._tag).toBe("Different")
      yield* untilDone(
        Effect.gen(function* () {
          yield* walk(destination, "RESUMING")
          yield* source.setState("PRE_COPY")
          yield* pump(source, destination, 10_000)
          for (let round = 0; round < 3; round++) {
            yield* Effect.sleep(3)
            expect((yield* source.precopyInfo).dirtyBytes).toBeGreaterThan(0)
            yield* pump(source, destination, 3_001)
          }
          yield* walk(source, "STOP_COPY")
          yield* pump(source, destination, 65_536)
          yield* walk(destination, "RUNNING")
        })
      )
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
      expect(yield* memoryDigest(destination)).toBe(yield* memoryDigest(source))
    })
  )

  it.effect(
    "a page changed after an earlier save is checksummed afresh: a second save still restores byte for byte",
    () =>
      Effect.gen(function* () {
        const config: SimDeviceConfig = { stateSize: 40 * 4096, pageSize: 4096, dirtyBytesPerSecond: 2_000_000 }
        const source = yield* makeSimDevice("gpu0", config)
        const destination = yield* makeSimDevice("gpu0-dst", config)
        yield* untilDone(
          Effect.gen(function* () {
            // A whole save read and dropped: every page's checksum has been computed once.
            yield* walk(source, "STOP_COPY")
            yield* readAll(source, 65_536)
            // Running again, the device changes pages (2 MB/s of 4 KiB pages: about 5 per 10 ms).
            yield* walk(source, "RUNNING")
            const before = yield* memoryDigest(source)
            yield* Effect.sleep(10)
            expect(yield* memoryDigest(source)).not.toBe(before)
            yield* walk(destination, "RESUMING")
            yield* walk(source, "STOP_COPY")
            yield* pump(source, destination, 65_536)
            yield* walk(destination, "RUNNING")
          })
        )
        expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
      })
  )

  it.effect("streams a 32 MiB device lazily, chunk by chunk", () =>
    Effect.gen(function* () {
      const config: SimDeviceConfig = { stateSize: 32 << 20, dirtyBytesPerSecond: 0, arcLatencyMs: 0 }
      const source = yield* makeSimDevice("big", config)
      const destination = yield* makeSimDevice("big-dst", config)
      yield* walk(destination, "RESUMING")
      yield* source.setState("PRE_COPY")
      const first = yield* source.read(1 << 20)
      expect(first._tag === "Chunk" && first.data.length).toBe(1 << 20)
      if (first._tag === "Chunk") yield* destination.write(first.data)
      yield* pump(source, destination, 1 << 20)
      yield* walk(source, "STOP_COPY")
      expect(yield* pump(source, destination, 1 << 20)).toBe(12)
      yield* destination.setState("STOP")
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
    })
  )

  it.effect("a device without PRE_COPY opens its session in STOP_COPY and sends everything there", () =>
    Effect.gen(function* () {
      const flags = flagsOf(["STOP_COPY"])
      const source = yield* makeSimDevice("s", { ...small, flags })
      const destination = yield* makeSimDevice("t", { ...small, flags })
      yield* walk(source, "STOP_COPY")
      yield* walk(destination, "RESUMING")
      expect(yield* pump(source, destination, 100)).toBe(smallStream)
      yield* destination.setState("STOP")
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
    })
  )

  it.effect("RESUMING→STOP fails on incomplete data and stays in RESUMING until the data is complete", () =>
    Effect.gen(function* () {
      const source = yield* makeSimDevice("s", small)
      const destination = yield* makeSimDevice("t", small)
      yield* walk(source, "STOP_COPY")
      yield* walk(destination, "RESUMING")
      const stream = yield* readAll(source, 4096)
      yield* destination.write(stream.subarray(0, 500))
      const failed = yield* Effect.result(destination.setState("STOP"))
      expect(Result.isFailure(failed) && failed.failure).toMatchObject({
        reason: {
          _tag: "ArcFailed",
          code: "EINVAL",
          stateAfter: "RESUMING",
          arc: { from: "RESUMING", to: "STOP" }
        }
      })
      expect(yield* destination.getState).toBe("RESUMING")
      yield* destination.write(stream.subarray(500))
      yield* destination.setState("STOP")
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
    })
  )

  it.effect("RESUMING→STOP fails on data from a device of another geometry, or with bytes past the end", () =>
    Effect.gen(function* () {
      const resumeWith = (data: Uint8Array) =>
        Effect.gen(function* () {
          const destination = yield* makeSimDevice("t", small)
          yield* walk(destination, "RESUMING")
          yield* destination.write(data)
          return yield* errorTag(destination.setState("STOP"))
        })
      const other = yield* makeSimDevice("s", { ...small, stateSize: 998 })
      yield* walk(other, "STOP_COPY")
      expect(yield* resumeWith(yield* readAll(other, 4096))).toBe("ArcFailed")
      const same = yield* makeSimDevice("s", small)
      yield* walk(same, "STOP_COPY")
      const stream = yield* readAll(same, 4096)
      expect(yield* resumeWith(stream)).toBe("ok")
      expect(yield* resumeWith(Buffer.concat([stream, new Uint8Array(1)]))).toBe("ArcFailed")
    })
  )

  it.effect(
    "a write that brings more state than the device holds fails with ENOMEM, as mtty's does; a reset ends the session",
    () =>
      Effect.gen(function* () {
        const bigger = yield* makeSimDevice("s", { ...small, stateSize: 1006 })
        yield* walk(bigger, "STOP_COPY")
        const stream = yield* readAll(bigger, 4096)
        const destination = yield* makeSimDevice("t", small)
        yield* walk(destination, "RESUMING")
        const refused = yield* Effect.flip(destination.write(stream))
        expect(refused).toMatchObject({
          reason: { _tag: "SessionFailed", operation: "write", code: "ENOMEM", state: "RESUMING" }
        })
        expect(yield* errorTag(destination.setState("STOP"))).toBe("ArcFailed")
        expect(yield* destination.getState).toBe("RESUMING")
        yield* destination.reset
        expect(yield* destination.getState).toBe("RUNNING")
      })
  )

  it.effect("reset returns RUNNING and closes the session", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", small)
      yield* device.setState("PRE_COPY")
      yield* device.read(100)
      yield* device.reset
      expect(yield* device.getState).toBe("RUNNING")
      expect(yield* errorTag(device.read(100))).toBe("SessionFailed")
      yield* device.setState("PRE_COPY")
      // A fresh session starts from the beginning.
      expect((yield* device.precopyInfo).initialBytes).toBe(smallStream - 12)
      yield* walk(device, "RESUMING")
      yield* device.reset
      expect(yield* errorTag(device.write(new Uint8Array(8)))).toBe("SessionFailed")
    })
  )
})

describe("dirtying", () => {
  const digestAfter = (device: SimDevice, state: State, ms: number) =>
    Effect.gen(function* () {
      yield* walk(device, state)
      const before = yield* memoryDigest(device)
      yield* elapse(ms)
      return before !== (yield* memoryDigest(device))
    })

  it.effect("an initiating device dirties its own memory; a quiesced or halted one does not", () =>
    Effect.gen(function* () {
      const config = { ...small, dirtyBytesPerSecond: 64_000 }
      expect(yield* digestAfter(yield* makeSimDevice("d", config), "RUNNING", 3)).toBe(true)
      expect(yield* digestAfter(yield* makeSimDevice("d", config), "PRE_COPY", 3)).toBe(true)
      expect(yield* digestAfter(yield* makeSimDevice("d", config), "RUNNING_P2P", 50)).toBe(false)
      expect(yield* digestAfter(yield* makeSimDevice("d", config), "PRE_COPY_P2P", 50)).toBe(false)
      expect(yield* digestAfter(yield* makeSimDevice("d", config), "STOP", 50)).toBe(false)
      const failing = yield* makeSimDevice("d", { ...config, faults: [{ _tag: "FailArc", leaveIn: "error" }] })
      yield* Effect.result(failing.setState("RUNNING_P2P"))
      expect(yield* digestAfter(failing, "ERROR", 3)).toBe(true)
    })
  )

  it.effect("memory depends on the seed and the id, and dirtying not on how often it is observed", () =>
    Effect.gen(function* () {
      const config = { ...small, dirtyBytesPerSecond: 10_000 }
      const a = yield* makeSimDevice("gpu", config)
      const b = yield* makeSimDevice("gpu", config)
      expect((yield* compareMemory(a, yield* makeSimDevice("gpu", { ...config, seed: 1 })))._tag).toBe("Different")
      expect((yield* compareMemory(a, yield* makeSimDevice("nic", config)))._tag).toBe("Different")
      for (let t = 0; t < 40; t++) {
        yield* elapse(1)
        yield* memoryDigest(a)
      }
      expect(yield* compareMemory(a, b)).toEqual({ _tag: "Identical" })
      expect(yield* memoryDigest(a)).not.toBe(yield* memoryDigest(yield* makeSimDevice("gpu", config)))
    })
  )
})
