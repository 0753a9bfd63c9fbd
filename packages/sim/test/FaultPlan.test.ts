import { describe, expect, it } from "@effect/vitest"
import { AllFlags } from "@lockstep/fsm"
import {
  compareMemory,
  type Fault,
  makeSimDevice,
  type SimDeviceConfig,
  SimDeviceConfig as SimDeviceConfigCodec,
  type SimEvent
} from "@lockstep/sim"
import { Effect, Fiber, Result, Schema } from "effect"
import { pump, readAll, walk } from "./Transfer.js"
import { elapse, untilDone } from "./VirtualTime.js"

const small: SimDeviceConfig = { stateSize: 1002, pageSize: 64, dirtyBytesPerSecond: 0, arcLatencyMs: 0 }

const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.result(effect), (r) => (Result.isFailure(r) ? r.failure : undefined))

/** Saves a device with `faults` and resumes the stream into a clean one; answers how RESUMING→STOP went. */
const roundTrip = (faults: ReadonlyArray<Fault>, chunk = 100) =>
  Effect.gen(function* () {
    const source = yield* makeSimDevice("s", { ...small, faults })
    const destination = yield* makeSimDevice("t", small)
    yield* walk(destination, "RESUMING")
    yield* source.setState("PRE_COPY")
    yield* pump(source, destination, chunk)
    yield* walk(source, "STOP_COPY")
    yield* pump(source, destination, chunk)
    const failure = yield* failureOf(destination.setState("STOP"))
    return { failure, state: yield* destination.getState, same: yield* compareMemory(source, destination) }
  })

describe("configuration codec", () => {
  it.effect("decodes a group file's sim key: flag names, per-arc latencies, faults with state numbers", () =>
    Effect.gen(function* () {
      const config = yield* Schema.decodeUnknownEffect(SimDeviceConfigCodec)({
        kind: "pci",
        flags: ["STOP_COPY", "P2P", "PRE_COPY"],
        arcLatencyMs: 2,
        arcLatenciesMs: { "RUNNING>RUNNING_P2P": 5 },
        stateSize: 8192,
        faults: [
          { _tag: "FailArc", from: 1, to: "STOP_COPY", leaveIn: "error", code: "EIO" },
          { _tag: "HangArc", nth: 3, times: "always" },
          { _tag: "CorruptData", atByte: 100 },
          { _tag: "TruncateData" },
          { _tag: "FailRead", nth: 2 },
          { _tag: "FailWrite", code: "ENOSPC" }
        ]
      })
      expect(config.flags).toBe(AllFlags)
      expect(config.arcLatenciesMs).toEqual({ "RUNNING>RUNNING_P2P": 5 })
      expect(config.faults?.[0]).toEqual({
        _tag: "FailArc",
        from: "STOP",
        to: "STOP_COPY",
        leaveIn: "error",
        code: "EIO"
      })
      const device = yield* makeSimDevice("d", config)
      expect(device.config.stateSize).toBe(8192)
      expect(device.config.arcLatencyMs).toBe(2)
    })
  )

  it.effect("rejects bad values", () =>
    Effect.gen(function* () {
      const bad: ReadonlyArray<unknown> = [
        { pageSize: 4098 },
        { pageSize: 8 },
        { stateSize: -1 },
        { flags: 9 },
        { kind: "usb" },
        { arcLatenciesMs: { "RUNNING>NOWHERE": 1 } },
        { faults: [{ _tag: "FailArc", leaveIn: "somewhere" }] },
        { faults: [{ _tag: "Explode" }] },
        { faults: [{ _tag: "FailRead", nth: 0 }] }
      ]
      for (const input of bad) {
        const r = yield* Effect.result(Schema.decodeUnknownEffect(SimDeviceConfigCodec)(input))
        expect(Result.isFailure(r), JSON.stringify(input)).toBe(true)
      }
      const made = yield* failureOf(makeSimDevice("d", { pageSize: 10 }))
      expect(made).toMatchObject({ _tag: "InvalidSimConfig", device: "d" })
    })
  )
})

describe("arc faults", () => {
  it.effect("a failed arc leaves the device in its original state, the target state, or ERROR", () =>
    Effect.gen(function* () {
      const expected = { original: "RUNNING_P2P", target: "STOP", error: "ERROR" } as const
      for (const leaveIn of ["original", "target", "error"] as const) {
        const device = yield* makeSimDevice("d", {
          ...small,
          faults: [{ _tag: "FailArc", from: "RUNNING_P2P", to: "STOP", leaveIn, code: "EIO" }]
        })
        yield* device.setState("RUNNING_P2P")
        const failure = yield* failureOf(device.setState("STOP"))
        expect(failure).toMatchObject({
          reason: {
            _tag: "ArcFailed",
            device: "d",
            arc: { from: "RUNNING_P2P", to: "STOP" },
            code: "EIO",
            stateAfter: expected[leaveIn]
          }
        })
        expect(yield* device.getState).toBe(expected[leaveIn])
      }
    })
  )

  it.effect("fires on the nth arc, once by default, or always", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, faults: [{ _tag: "FailArc", nth: 3, code: "ETIMEDOUT" }] })
      yield* device.setState("RUNNING_P2P")
      yield* device.setState("STOP")
      expect(yield* failureOf(device.setState("STOP_COPY"))).toMatchObject({
        reason: { code: "ETIMEDOUT", stateAfter: "STOP" }
      })
      yield* device.setState("STOP_COPY")
      const always = yield* makeSimDevice("d", {
        ...small,
        faults: [{ _tag: "FailArc", to: "RUNNING_P2P", times: "always" }]
      })
      for (let i = 0; i < 3; i++)
        expect(yield* failureOf(always.setState("RUNNING_P2P"))).toMatchObject({ reason: { code: "EIO" } })
      yield* always.setState("PRE_COPY")
    })
  )

  it.effect("a hung arc never completes; interrupting it leaves the original state, consistent", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, faults: [{ _tag: "HangArc", from: "RUNNING_P2P" }] })
      const events: Array<SimEvent["_tag"]> = []
      device.observe((e) => events.push(e._tag))
      yield* device.setState("RUNNING_P2P")
      const fiber = yield* Effect.forkChild(device.setState("STOP"))
      yield* elapse(60_000)
      expect(fiber.pollUnsafe()).toBeUndefined()
      expect(yield* device.status).toEqual({ state: "RUNNING_P2P", inFlight: { from: "RUNNING_P2P", to: "STOP" } })
      yield* Fiber.interrupt(fiber)
      expect(yield* device.status).toEqual({ state: "RUNNING_P2P" })
      expect(events).toEqual(["ArcStarted", "ArcCompleted", "ArcStarted", "ArcInterrupted"])
      yield* device.setState("STOP")
      expect(yield* device.getState).toBe("STOP")
    })
  )

  it.effect("a normal arc interrupted midway also leaves the original state", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, arcLatencyMs: 10 })
      const fiber = yield* Effect.forkChild(device.setState("PRE_COPY"))
      yield* elapse(4)
      yield* Fiber.interrupt(fiber)
      expect(yield* device.status).toEqual({ state: "RUNNING" })
      expect(yield* failureOf(device.read(10))).toMatchObject({ reason: { _tag: "SessionFailed" } })
    })
  )

  it.effect("an interrupted arc may land anyway (LandOnInterrupt): in its target, session opened, or in ERROR", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", {
        ...small,
        faults: [
          { _tag: "HangArc", to: "PRE_COPY", times: "always" },
          { _tag: "LandOnInterrupt", to: "PRE_COPY" },
          { _tag: "LandOnInterrupt", to: "RUNNING_P2P", leaveIn: "error" }
        ]
      })
      const events: Array<SimEvent> = []
      device.observe((e) => events.push(e))
      const hung = yield* Effect.forkChild(device.setState("PRE_COPY"))
      yield* elapse(5)
      yield* Fiber.interrupt(hung)
      // The request was cut short, yet the device got there: the saving session is open.
      expect(yield* device.status).toEqual({ state: "PRE_COPY" })
      expect(yield* failureOf(device.read(10))).toBeUndefined()
      yield* device.setState("RUNNING")
      // The LandOnInterrupt into PRE_COPY is spent: the next interrupted arc is cancelled.
      const again = yield* Effect.forkChild(device.setState("PRE_COPY"))
      yield* elapse(5)
      yield* Fiber.interrupt(again)
      expect(yield* device.status).toEqual({ state: "RUNNING" })
      const slow = yield* makeSimDevice("e", {
        ...small,
        arcLatencyMs: 10,
        faults: [{ _tag: "LandOnInterrupt", leaveIn: "error" }]
      })
      const cut = yield* Effect.forkChild(slow.setState("RUNNING_P2P"))
      yield* elapse(4)
      yield* Fiber.interrupt(cut)
      expect(yield* slow.status).toEqual({ state: "ERROR" })
      expect(events.filter((e) => e._tag === "ArcInterrupted").map((e) => e.state)).toEqual(["PRE_COPY", "RUNNING"])
    })
  )

  it.effect("a reset aborts a hung arc, which then fails ECANCELED once it wakes", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, arcLatencyMs: 5 })
      const fiber = yield* Effect.forkChild(Effect.result(device.setState("RUNNING_P2P")))
      yield* elapse(2)
      yield* device.reset
      expect(yield* device.status).toEqual({ state: "RUNNING" })
      yield* elapse(5)
      const outcome = yield* Fiber.join(fiber)
      expect(Result.isFailure(outcome) && outcome.failure).toMatchObject({
        reason: { code: "ECANCELED", stateAfter: "RUNNING" }
      })
      expect(yield* device.getState).toBe("RUNNING")
    })
  )
})

describe("data faults", () => {
  it.effect("without faults, the round trip succeeds (the control)", () =>
    Effect.gen(function* () {
      const { failure, same } = yield* roundTrip([])
      expect(failure).toBeUndefined()
      expect(same).toEqual({ _tag: "Identical" })
    })
  )

  it.effect("corrupting any single byte of the saved stream fails RESUMING→STOP, which stays RESUMING", () =>
    Effect.gen(function* () {
      const length = 24 + 16 * 12 + 1002 + 12
      for (let atByte = 0; atByte < length; atByte++) {
        const { failure, state } = yield* roundTrip([{ _tag: "CorruptData", atByte }], 97)
        expect(failure, `byte ${atByte}`).toMatchObject({
          reason: { _tag: "ArcFailed", code: "EINVAL", stateAfter: "RESUMING" }
        })
        expect(state).toBe("RESUMING")
      }
    })
  )

  it.effect("truncated data fails RESUMING→STOP (cut anywhere, or just the trailer dropped)", () =>
    Effect.gen(function* () {
      const dropped = yield* roundTrip([{ _tag: "TruncateData" }])
      expect(dropped.failure).toMatchObject({ reason: { _tag: "ArcFailed", stateAfter: "RESUMING" } })
      expect(dropped.failure?.message).toContain("no trailer")
      const cut = yield* roundTrip([{ _tag: "TruncateData", afterBytes: 500 }])
      expect(cut.failure).toMatchObject({ reason: { _tag: "ArcFailed", stateAfter: "RESUMING" } })
    })
  )

  it.effect("a truncated stream ends early: NoData in pre-copy, End in STOP_COPY", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, faults: [{ _tag: "TruncateData", afterBytes: 300 }] })
      yield* device.setState("PRE_COPY")
      expect((yield* readAll(device, 64)).length).toBe(300)
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      yield* walk(device, "STOP_COPY")
      expect(yield* device.read(64)).toEqual({ _tag: "End" })
    })
  )

  it.effect("data faults select the nth saving session", () =>
    Effect.gen(function* () {
      const device = yield* makeSimDevice("d", { ...small, faults: [{ _tag: "TruncateData", afterBytes: 10, nth: 2 }] })
      yield* device.setState("PRE_COPY")
      expect((yield* readAll(device, 4096)).length).toBeGreaterThan(10)
      yield* device.setState("RUNNING")
      yield* device.setState("PRE_COPY")
      expect((yield* readAll(device, 4096)).length).toBe(10)
    })
  )

  it.effect("a failed read or write is a SessionFailed that consumes nothing", () =>
    Effect.gen(function* () {
      const source = yield* makeSimDevice("s", { ...small, faults: [{ _tag: "FailRead", nth: 3, code: "EIO" }] })
      const destination = yield* makeSimDevice("t", { ...small, faults: [{ _tag: "FailWrite", nth: 2 }] })
      yield* walk(source, "STOP_COPY")
      yield* walk(destination, "RESUMING")
      const chunks: Array<Uint8Array> = []
      for (let i = 0; i < 2; i++) {
        const r = yield* source.read(100)
        if (r._tag === "Chunk") chunks.push(r.data)
      }
      expect(yield* failureOf(source.read(100))).toMatchObject({
        reason: {
          _tag: "SessionFailed",
          device: "s",
          operation: "read",
          code: "EIO",
          state: "STOP_COPY"
        }
      })
      chunks.push(...[yield* readAll(source, 100)])
      const [first, ...rest] = chunks
      yield* destination.write(first ?? new Uint8Array())
      expect(yield* failureOf(destination.write(rest[0] ?? new Uint8Array()))).toMatchObject({
        reason: {
          _tag: "SessionFailed",
          operation: "write",
          code: "EIO",
          state: "RESUMING"
        }
      })
      for (const c of rest) yield* destination.write(c)
      yield* destination.setState("STOP")
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
    })
  )

  it.effect("a hung arc in the middle of a migration can be interrupted and the migration retried", () =>
    Effect.gen(function* () {
      const source = yield* makeSimDevice("s", { ...small, arcLatencyMs: 1, faults: [{ _tag: "HangArc", to: "STOP" }] })
      const destination = yield* makeSimDevice("t", { ...small, arcLatencyMs: 1 })
      const attempt = Effect.gen(function* () {
        yield* walk(destination, "RESUMING")
        yield* walk(source, "STOP_COPY")
        yield* pump(source, destination, 1000)
        yield* destination.setState("STOP")
      })
      const first = yield* untilDone(Effect.result(attempt.pipe(Effect.timeout(50))))
      expect(Result.isFailure(first)).toBe(true)
      expect(yield* source.status).toEqual({ state: "RUNNING_P2P" })
      yield* destination.reset
      yield* untilDone(walk(source, "RUNNING"))
      yield* untilDone(attempt)
      expect(yield* compareMemory(source, destination)).toEqual({ _tag: "Identical" })
    })
  )
})
