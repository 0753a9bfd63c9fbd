import { describe, expect, it } from "@effect/vitest"
import type { DeviceError } from "@lockstep/device"
import type { State } from "@lockstep/fsm"
import {
  compareMemory,
  type Fabric,
  makeFabric,
  makeSimDevice,
  memoryDigest,
  type P2PEdge,
  type SimDevice,
  type SimDeviceConfig
} from "@lockstep/sim"
import { Effect, Fiber, Result } from "effect"
import { readAll, walk } from "./Transfer.js"
import { elapse, now, untilDone } from "./VirtualTime.js"

const config: SimDeviceConfig = { stateSize: 64 << 10, pageSize: 4096, dirtyBytesPerSecond: 0, arcLatencyMs: 1 }

const failureOf = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.map(Effect.result(effect), (r) => (Result.isFailure(r) ? r.failure : undefined))

/** Walks every device to `state` concurrently: one phase of a group transition. */
const phase = (devices: ReadonlyArray<SimDevice>, state: State) =>
  Effect.forEach(devices, (d) => walk(d, state), { concurrency: "unbounded", discard: true })

/** FNV-1a over everything a migration moved, to compare runs. */
const hashInto = (h: number, data: Uint8Array): number => {
  let x = h
  for (const byte of data) x = Math.imul(x ^ byte, 0x01000193)
  return x >>> 0
}

/** Streams what `source` has now into `destination`, folding the bytes into `hash.value`. */
const pumpHashed = (source: SimDevice, destination: SimDevice, hash: { value: number }) =>
  Effect.gen(function* () {
    for (;;) {
      const r = yield* source.read(5000)
      if (r._tag !== "Chunk") return
      hash.value = hashInto(hash.value, r.data)
      yield* destination.write(r.data)
    }
  })

interface Run {
  readonly start: number
  readonly source: Fabric
  readonly destination: Fabric
  readonly same: ReadonlyArray<string>
  readonly digests: ReadonlyArray<string>
  readonly streamHash: number
}

/**
 * A two-device migration, a → b over P2P (and b → a), with pre-copy. `order` says how the
 * source group stops: `"quiesce-first"` brings every initiator to PRE_COPY_P2P before anyone
 * enters STOP_COPY (the rule); `"target-first"` stops the target b while a is still running.
 */
const migrate = (order: "quiesce-first" | "target-first", seed = 7, deviceConfig: SimDeviceConfig = config) =>
  Effect.gen(function* () {
    const start = yield* now
    const edges: ReadonlyArray<P2PEdge> = [
      { initiator: "a", target: "b" },
      { initiator: "b", target: "a", writesPerSecond: 200 }
    ]
    const a = yield* makeSimDevice("a", { ...deviceConfig, seed })
    const b = yield* makeSimDevice("b", { ...deviceConfig, seed })
    const a2 = yield* makeSimDevice("a-dst", { ...deviceConfig, seed })
    const b2 = yield* makeSimDevice("b-dst", { ...deviceConfig, seed })
    const source = yield* makeFabric({ devices: [a, b], edges, seed })
    const destination = yield* makeFabric({
      devices: [a2, b2],
      edges: edges.map((e) => ({ ...e, initiator: `${e.initiator}-dst`, target: `${e.target}-dst` })),
      seed
    })
    const hash = { value: 0x811c9dc5 }
    const pairs: ReadonlyArray<readonly [SimDevice, SimDevice]> = [
      [a, a2],
      [b, b2]
    ]
    const same: Array<string> = []
    const drain = Effect.forEach(pairs, ([s, d]) => pumpHashed(s, d, hash), { discard: true })
    yield* untilDone(
      Effect.gen(function* () {
        yield* phase([a2, b2], "RUNNING_P2P")
        yield* phase([a2, b2], "RESUMING")
        yield* phase([a, b], "PRE_COPY")
        for (let round = 0; round < 3; round++) {
          yield* drain
          yield* Effect.sleep(4)
        }
        if (order === "quiesce-first") {
          yield* phase([a, b], "PRE_COPY_P2P")
          yield* phase([a, b], "STOP_COPY")
          yield* drain
        } else {
          yield* walk(b, "STOP_COPY")
          yield* drain
          // a keeps writing into the stopped b for a while, then stops too.
          yield* Effect.sleep(10)
          yield* walk(a, "STOP_COPY")
          yield* drain
        }
        yield* Effect.sleep(10)
        yield* phase([a2, b2], "STOP")
        // Compared as resumed: once running, the destinations change their own memory.
        for (const [s, d] of pairs) same.push((yield* compareMemory(s, d))._tag)
        yield* phase([a2, b2], "RUNNING_P2P")
        yield* phase([a2, b2], "RUNNING")
      })
    )
    const digests: Array<string> = []
    for (const d of [a, b, a2, b2]) digests.push(yield* memoryDigest(d))
    return { start, source, destination, same, digests, streamHash: hash.value } satisfies Run
  })

/** A run's logs with times relative to its start, so that runs made one after the other compare. */
const timeline = (run: Run) => {
  const t = (ms: number) => ms - run.start
  return {
    source: run.source.trace().map((e) => ({ ...e, at: t(e.at) })),
    destination: run.destination.trace().map((e) => ({ ...e, at: t(e.at) })),
    violations: run.source
      .violations()
      .map((v) => ({ ...v, at: t(v.at), endedAt: v.endedAt === undefined ? undefined : t(v.endedAt) })),
    corruptingWrites: run.source.corruptingWrites().map((w) => ({ ...w, from: t(w.from), to: t(w.to) }))
  }
}

describe("the safety invariant", () => {
  it.effect("stopping a target before its initiator quiesces is a violation and corrupts the resumed copy", () =>
    Effect.gen(function* () {
      const run = yield* migrate("target-first")
      const violations = run.source.violations()
      expect(violations.length).toBeGreaterThan(0)
      expect(violations[0]).toMatchObject({
        edge: { initiator: "a", target: "b" },
        initiator: { state: "PRE_COPY" },
        target: { state: "PRE_COPY_P2P", inFlight: { from: "PRE_COPY_P2P", to: "STOP_COPY" } },
        cause: { device: "b", event: "ArcStarted" }
      })
      expect(run.source.corruptingWrites().length).toBeGreaterThan(0)
      expect(run.source.corruptingWrites().every((w) => w.edge.target === "b" && w.to > w.from)).toBe(true)
      expect(run.same).toEqual(["Identical", "Different"])
      const failure = yield* failureOf(run.source.assertNoViolations)
      expect(failure?._tag).toBe("InvariantViolated")
      expect(failure?.message).toContain("a → b")
      expect(run.destination.violations()).toEqual([])
    })
  )

  it.effect("quiescing every initiator first keeps the invariant and the resumed copies identical", () =>
    Effect.gen(function* () {
      const run = yield* migrate("quiesce-first")
      expect(run.source.violations()).toEqual([])
      expect(run.source.corruptingWrites()).toEqual([])
      expect(run.destination.violations()).toEqual([])
      expect(run.same).toEqual(["Identical", "Identical"])
      // The writes were real: P2P traffic dirtied the targets during pre-copy.
      expect(run.source.writesLanded()).toBeGreaterThan(10)
      yield* run.source.assertNoViolations
      yield* run.destination.assertNoViolations
    })
  )

  it.effect("a write into a stopped target shows in the resumed copy even if it landed before the page was sent", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", config)
      const b = yield* makeSimDevice("b", config)
      const b2 = yield* makeSimDevice("b-dst", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* untilDone(walk(b2, "RESUMING"))
      yield* untilDone(walk(b, "STOP"))
      yield* elapse(20)
      // a quiesces before b sends anything: every corrupt word is in the stream.
      yield* untilDone(walk(a, "RUNNING_P2P"))
      yield* untilDone(walk(b, "STOP_COPY"))
      yield* readAll(b, 1 << 20).pipe(Effect.flatMap((stream) => b2.write(stream)))
      yield* untilDone(b2.setState("STOP"))
      expect(fabric.corruptingWrites().reduce((n, w) => n + w.writes, 0)).toBeGreaterThan(0)
      // The bytes match (the corrupt words were sent) but the legitimate content does not.
      expect(yield* memoryDigest(b2)).toBe(yield* memoryDigest(b))
      expect((yield* compareMemory(b, b2))._tag).toBe("Different")
    })
  )

  it.effect("a device that failed into ERROR counts as initiating", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", { ...config, faults: [{ _tag: "FailArc", from: "STOP", leaveIn: "error" }] })
      const b = yield* makeSimDevice("b", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* untilDone(phase([a, b], "STOP"))
      expect(fabric.violations()).toEqual([])
      yield* untilDone(Effect.result(a.setState("RUNNING_P2P")))
      expect(fabric.violations()).toMatchObject([
        { at: 3, initiator: { state: "ERROR" }, target: { state: "STOP" }, cause: { device: "a", event: "ArcFailed" } }
      ])
      yield* untilDone(walk(b, "RUNNING_P2P"))
      expect(fabric.violations()[0]?.endedAt).toBe(4)
    })
  )

  it.effect("an arc in flight counts at both ends of the arc", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", { ...config, arcLatenciesMs: { "RUNNING>RUNNING_P2P": 5 } })
      const b = yield* makeSimDevice("b", config)
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      const quiesce = yield* Effect.forkChild(a.setState("RUNNING_P2P"))
      yield* untilDone(walk(b, "STOP"))
      expect(fabric.violations()).toEqual([
        {
          edge: { initiator: "a", target: "b" },
          at: 1,
          initiator: { state: "RUNNING", inFlight: { from: "RUNNING", to: "RUNNING_P2P" } },
          target: { state: "RUNNING_P2P", inFlight: { from: "RUNNING_P2P", to: "STOP" } },
          cause: { device: "b", event: "ArcStarted" }
        }
      ])
      yield* untilDone(Fiber.join(quiesce))
      expect(fabric.violations()[0]?.endedAt).toBe(5)
      expect(fabric.corruptingWrites().map((w) => [w.from, w.to])).toEqual([
        [1, 2],
        [2, 5]
      ])
    })
  )

  it.effect("records a violation that lasts no time at all", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", { ...config, arcLatencyMs: 0 })
      const b = yield* makeSimDevice("b", { ...config, arcLatencyMs: 0 })
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      yield* elapse(3)
      yield* walk(b, "STOP")
      yield* walk(b, "RUNNING")
      expect(fabric.violations()).toMatchObject([{ at: 3, endedAt: 3, target: { state: "RUNNING_P2P" } }])
      expect(fabric.corruptingWrites()).toEqual([])
      expect(Result.isFailure(yield* Effect.result(fabric.assertNoViolations))).toBe(true)
    })
  )

  it.effect("the invariant holds whatever order the targets take, once their initiators are quiesced", () =>
    Effect.gen(function* () {
      const n0 = yield* makeSimDevice("n0", config)
      const n1 = yield* makeSimDevice("n1", config)
      const devices = [n0, n1, yield* makeSimDevice("n2", config), yield* makeSimDevice("n3", config)]
      const edges: Array<P2PEdge> = []
      for (const i of devices) for (const t of devices) if (i !== t) edges.push({ initiator: i.id, target: t.id })
      const fabric = yield* makeFabric({ devices, edges })
      yield* untilDone(phase(devices, "RUNNING_P2P"))
      yield* untilDone(Effect.forEach(devices, (d) => walk(d, "STOP_COPY"), { discard: true }))
      yield* untilDone(phase(devices, "RUNNING_P2P"))
      yield* untilDone(phase(devices, "RUNNING"))
      expect(fabric.violations()).toEqual([])
      // A device brought up to RUNNING while a target is still stopped breaks it on the way up.
      yield* untilDone(phase(devices, "RUNNING_P2P"))
      yield* untilDone(walk(n0, "STOP"))
      yield* untilDone(walk(n1, "RUNNING"))
      expect(fabric.violations()).toMatchObject([{ edge: { initiator: "n1", target: "n0" } }])
    })
  )
})

describe("P2P writes", () => {
  it.effect("land in a running or quiesced target as dirtied pages, and only from an initiating initiator", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", config)
      const b = yield* makeSimDevice("b", { ...config, arcLatencyMs: 0 })
      const fabric = yield* makeFabric({
        devices: [a, b],
        edges: [{ initiator: "a", target: "b" }],
        writesPerSecond: 500
      })
      yield* b.setState("PRE_COPY")
      yield* readAll(b, 1 << 20)
      yield* elapse(10)
      expect(fabric.writesLanded()).toBe(0)
      const { dirtyBytes } = yield* b.precopyInfo
      expect(fabric.writesLanded()).toBe(5)
      expect(dirtyBytes).toBeGreaterThan(0)
      expect(dirtyBytes % (4096 + 12)).toBe(0)
      yield* readAll(b, 1 << 20)
      yield* untilDone(a.setState("RUNNING_P2P"))
      const landed = fabric.writesLanded()
      yield* elapse(100)
      yield* fabric.settle
      expect(fabric.writesLanded()).toBe(landed)
      expect(yield* b.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 0 })
      yield* b.setState("PRE_COPY_P2P")
      yield* untilDone(a.setState("RUNNING"))
      yield* elapse(10)
      expect((yield* b.precopyInfo).dirtyBytes).toBeGreaterThan(0)
      expect(fabric.violations()).toEqual([])
    })
  )

  it.effect("an edge's own rate overrides the fabric's", () =>
    Effect.gen(function* () {
      const devices = yield* Effect.forEach(["a", "b", "c"], (id) => makeSimDevice(id, config))
      const fabric = yield* makeFabric({
        devices,
        edges: [
          { initiator: "a", target: "b" },
          { initiator: "a", target: "c", writesPerSecond: 0 }
        ],
        writesPerSecond: 1000
      })
      const before = yield* Effect.forEach(devices, memoryDigest)
      yield* elapse(7)
      yield* fabric.settle
      expect(fabric.writesLanded()).toBe(7)
      const after = yield* Effect.forEach(devices, memoryDigest)
      expect(after.map((d, i) => d !== before[i])).toEqual([false, true, false])
    })
  )
})

describe("determinism", () => {
  it.effect("the same seed gives the same run: same logs, same data", () =>
    Effect.gen(function* () {
      const dirtying = { ...config, dirtyBytesPerSecond: 100_000 }
      const first = yield* migrate("target-first", 11, dirtying)
      const second = yield* migrate("target-first", 11, dirtying)
      expect(second.start).toBeGreaterThan(first.start)
      const log = timeline(first)
      expect(log.violations.length).toBeGreaterThan(0)
      expect(log.corruptingWrites.length).toBeGreaterThan(0)
      expect(timeline(second)).toEqual(log)
      expect(second.digests).toEqual(first.digests)
      expect(second.streamHash).toBe(first.streamHash)
      const other = yield* migrate("target-first", 12, dirtying)
      expect(other.streamHash).not.toBe(first.streamHash)
      expect(other.digests).not.toEqual(first.digests)
    })
  )
})

describe("building a fabric", () => {
  it.effect("rejects bad devices and edges", () =>
    Effect.gen(function* () {
      const reason = (devices: ReadonlyArray<SimDevice>, edges: ReadonlyArray<P2PEdge>, writesPerSecond?: number) =>
        Effect.map(
          failureOf(
            makeFabric(writesPerSecond === undefined ? { devices, edges } : { devices, edges, writesPerSecond })
          ),
          (e) => e?.reason
        )
      const a = yield* makeSimDevice("a", config)
      const b = yield* makeSimDevice("b", config)
      const vgpu = yield* makeSimDevice("v", { ...config, kind: "mdev" })
      expect(yield* reason([a, b], [{ initiator: "a", target: "c" }])).toContain("unknown device")
      expect(yield* reason([a, b], [{ initiator: "a", target: "a" }])).toContain("its own")
      expect(
        yield* reason(
          [a, b],
          [
            { initiator: "a", target: "b" },
            { initiator: "a", target: "b" }
          ]
        )
      ).toContain("twice")
      expect(yield* reason([a, vgpu], [{ initiator: "a", target: "v" }])).toContain("mdev")
      expect(yield* reason([a, a], [])).toContain("twice")
      expect(yield* reason([a, b], [{ initiator: "a", target: "b", writesPerSecond: -1 }])).toContain("rate")
      expect(yield* reason([a, b], [], Number.NaN)).toContain("rate")
      const fabric = yield* makeFabric({ devices: [a, b], edges: [] })
      expect(yield* reason([a], [])).toContain("already belongs")
      yield* fabric.detach
      yield* makeFabric({ devices: [a, vgpu], edges: [] })
    })
  )

  it.effect("sees devices that are already unsafe when it is built", () =>
    Effect.gen(function* () {
      const a = yield* makeSimDevice("a", config)
      const b = yield* makeSimDevice("b", config)
      yield* untilDone(walk(b, "STOP"))
      const fabric = yield* makeFabric({ devices: [a, b], edges: [{ initiator: "a", target: "b" }] })
      expect(fabric.violations()).toMatchObject([{ at: 2, cause: { device: "fabric", event: "FabricBuilt" } }])
    })
  )

  it.effect("scales: a 1024-device shared-IOMMU mesh (1,047,552 edges) quiesces and stops cleanly", () =>
    Effect.gen(function* () {
      const n = 1024
      const small: SimDeviceConfig = { stateSize: 4096, pageSize: 4096, arcLatencyMs: 1 }
      const devices = yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => `gpu${i}`),
        (id) => makeSimDevice(id, small)
      )
      const edges: Array<P2PEdge> = []
      for (const i of devices) for (const t of devices) if (i !== t) edges.push({ initiator: i.id, target: t.id })
      const fabric = yield* makeFabric({ devices, edges, writesPerSecond: 100 })
      const group = (state: State): Effect.Effect<void, DeviceError | string> => untilDone(phase(devices, state))
      yield* group("RUNNING_P2P")
      yield* group("STOP")
      yield* group("RUNNING_P2P")
      yield* group("RUNNING")
      expect(fabric.trace().length).toBe(n * 8)
      yield* fabric.assertNoViolations
    })
  )
})
