/*
 * The reported downtime never undercounts. For random groups, state sizes, chunk sizes, bandwidth
 * limits and concurrency limits, the migration's `downtimeMs` is at least a floor this test
 * computes from the scenario alone, by the rules of DESIGN.md:
 *
 * - Switchover (§2, §3.4): each device walks its kernel path to STOP_COPY (the paths below are
 *   DESIGN §1's arcs), arcs in sequence, each as long as the scenario's latency for it; an arc into
 *   a halted state waits until every initiator of that device has left the initiating states.
 *   Run as early as that allows, device d is in STOP_COPY at ready(d), no sooner.
 * - Drain (§3.4): one channel at the bandwidth limit. Every device's STOP_COPY data crosses it
 *   after that device is ready, so the last byte cannot cross before
 *   max over d of ( ready(d) + Σ bytes(e) / bandwidth over devices e with ready(e) ≥ ready(d) ).
 *   When every device is ready at once, that is the "switchover + remaining bytes /
 *   bandwidth"; when they are not, the drain overlaps later devices' arcs and the plain sum is
 *   not a lower bound (devices drain as soon as they are in STOP_COPY, §3.4).
 * - Then (§3.5, §3.6) the destination validates every device (RESUMING → STOP) once all the data
 *   is in, votes, and only after COMMIT resumes: STOP → quiesced → RUNNING, an arc into an
 *   initiating state waiting until every target of that device has left the halted states.
 *
 * bytes(d) is what the device must send in STOP_COPY at least, by the simulated device's own
 * definition (`precopyInitialBytes`: the rest of the state only moves in STOP_COPY; the saved
 * stream's format in `@lockstep/sim` SaveStream: 24-byte header, a 12-byte record header per
 * page, a 12-byte trailer).
 *
 * A second property pins the drain's order: given when each device really reached STOP_COPY
 * (the executor's events) and what it really sent, the last device's end leaves exactly at the
 * single-channel optimum, whatever the limit on devices read at once.
 */
import { describe, expect, it } from "@effect/vitest"
import type { MigrationEvent } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { assertSafe, type GroupDoc, makePair, migrate, successOf } from "../../packages/migration/test/Harness.js"

type Flag = "STOP_COPY" | "P2P" | "PRE_COPY"
type Step = readonly [string, string]

/** DESIGN §1: each device's kernel path to STOP_COPY from where pre-copy leaves it. */
const switchoverPath = (p2p: boolean, precopying: boolean): ReadonlyArray<Step> =>
  p2p
    ? precopying
      ? [
          ["PRE_COPY", "PRE_COPY_P2P"],
          ["PRE_COPY_P2P", "STOP_COPY"]
        ]
      : [
          ["RUNNING", "RUNNING_P2P"],
          ["RUNNING_P2P", "STOP"],
          ["STOP", "STOP_COPY"]
        ]
    : precopying
      ? [["PRE_COPY", "STOP_COPY"]]
      : [
          ["RUNNING", "STOP"],
          ["STOP", "STOP_COPY"]
        ]

/** DESIGN §1: the destination's path once validated (RESUMING → STOP): to RUNNING, through the quiescent state if it has one. */
const resumePath = (p2p: boolean): ReadonlyArray<Step> =>
  p2p
    ? [
        ["STOP", "RUNNING_P2P"],
        ["RUNNING_P2P", "RUNNING"]
      ]
    : [["STOP", "RUNNING"]]

const halted = new Set(["STOP", "STOP_COPY", "RESUMING"])
const initiating = new Set(["RUNNING", "PRE_COPY", "ERROR"])

interface DeviceSpec {
  readonly id: string
  readonly flags: ReadonlyArray<Flag>
  readonly stateSize: number
  readonly precopyInitialBytes: number
  readonly arcLatencyMs: number
  /** One arc made slower or faster than the others. */
  readonly override: { readonly arc: string; readonly ms: number } | undefined
}

interface Spec {
  readonly devices: ReadonlyArray<DeviceSpec>
  /** Initiator → target, initiators only among devices with P2P (so the group is migratable). */
  readonly edges: ReadonlyArray<readonly [string, string]>
  readonly writesPerSecond: number
  readonly precopy: boolean
  readonly bandwidthLimit: number
  readonly chunkBytes: number
  readonly downtimeLimitMs: number
  readonly ioConcurrency: number | undefined
  readonly arcConcurrency: number | undefined
}

const pageSize = 4096
const flagSets: ReadonlyArray<ReadonlyArray<Flag>> = [
  ["STOP_COPY"],
  ["STOP_COPY", "P2P"],
  ["STOP_COPY", "PRE_COPY"],
  ["STOP_COPY", "P2P", "PRE_COPY"]
]
const arcKeys = [
  "PRE_COPY>PRE_COPY_P2P",
  "PRE_COPY_P2P>STOP_COPY",
  "RUNNING>RUNNING_P2P",
  "RUNNING_P2P>STOP",
  "STOP>STOP_COPY",
  "RESUMING>STOP",
  "STOP>RUNNING_P2P",
  "RUNNING_P2P>RUNNING"
]
const halfMs = (min: number, max: number) => fc.integer({ min: min * 2, max: max * 2 }).map((n) => n / 2)

const deviceArb = (id: string): fc.Arbitrary<DeviceSpec> =>
  fc
    .record({
      flags: fc.constantFrom(...flagSets),
      stateSize: fc.integer({ min: 1, max: 2 * 1024 * 1024 }),
      precopyShare: fc.double({ min: 0, max: 1, noNaN: true }),
      arcLatencyMs: halfMs(0.5, 6),
      override: fc.option(fc.record({ arc: fc.constantFrom(...arcKeys), ms: halfMs(0, 20) }), { nil: undefined })
    })
    .map((d) => ({
      id,
      flags: d.flags,
      stateSize: d.stateSize,
      precopyInitialBytes: Math.floor(d.stateSize * d.precopyShare),
      arcLatencyMs: d.arcLatencyMs,
      override: d.override
    }))

const specArb: fc.Arbitrary<Spec> = fc.integer({ min: 1, max: 4 }).chain((n) =>
  fc
    .tuple(
      fc.tuple(...Array.from({ length: n }, (_, i) => deviceArb(`dev${i}`))),
      fc.array(fc.tuple(fc.nat({ max: n - 1 }), fc.nat({ max: n - 1 })), { maxLength: 8 }),
      fc.record({
        writesPerSecond: fc.constantFrom(0, 0, 2000),
        precopy: fc.boolean(),
        bandwidthLimit: fc.integer({ min: 10_000_000, max: 2_000_000_000 }),
        chunkBytes: fc.oneof(fc.integer({ min: 4096, max: 4 * 1024 * 1024 }), fc.constant(8 * 1024 * 1024)),
        downtimeLimitMs: fc.integer({ min: 1, max: 400 }),
        ioConcurrency: fc.option(fc.integer({ min: 1, max: n }), { nil: undefined }),
        arcConcurrency: fc.option(fc.integer({ min: 1, max: 2 * n }), { nil: undefined })
      })
    )
    .map(([devices, pairs, rest]) => {
      const edges = new Map<string, readonly [string, string]>()
      for (const [a, b] of pairs) {
        const from = devices[a]
        const to = devices[b]
        if (from === undefined || to === undefined || a === b || !from.flags.includes("P2P")) continue
        edges.set(`${from.id}>${to.id}`, [from.id, to.id])
      }
      return { devices, edges: [...edges.values()], ...rest }
    })
)

const docOf = (spec: Spec): GroupDoc => ({
  devices: spec.devices.map((d) => ({
    id: d.id,
    kind: "pci",
    flags: d.flags,
    sim: {
      stateSize: d.stateSize,
      pageSize,
      precopyInitialBytes: d.precopyInitialBytes,
      dirtyBytesPerSecond: 0,
      arcLatencyMs: d.arcLatencyMs,
      ...(d.override === undefined ? {} : { arcLatenciesMs: { [d.override.arc]: d.override.ms } })
    }
  })),
  topology: { edges: spec.edges }
})

const latency = (d: DeviceSpec, [from, to]: Step): number =>
  d.override !== undefined && d.override.arc === `${from}>${to}` ? d.override.ms : d.arcLatencyMs

/** The bytes a device must send in STOP_COPY at least (see the header). */
const stopCopyBytesAtLeast = (d: DeviceSpec, precopying: boolean): number => {
  const pages = Math.ceil(d.stateSize / pageSize)
  const lastPage = d.stateSize - (pages - 1) * pageSize
  const firstFinal = precopying ? Math.min(pages, Math.ceil(d.precopyInitialBytes / pageSize)) : 0
  let bytes = 12 + (precopying ? 0 : 24)
  for (let page = firstFinal; page < pages; page++) bytes += 12 + (page === pages - 1 ? lastPage : pageSize)
  return bytes
}

/** The single-channel optimum with release times: the last byte's earliest crossing. */
const channelFloor = (jobs: ReadonlyArray<{ readonly ready: number; readonly ms: number }>): number =>
  Math.max(0, ...jobs.map((j) => j.ready + jobs.filter((k) => k.ready >= j.ready).reduce((t, k) => t + k.ms, 0)))

/** The floor of the reported downtime, from the scenario alone (see the header). */
const downtimeFloor = (spec: Spec): number => {
  const p2p = (d: DeviceSpec) => d.flags.includes("P2P")
  const precopying = (d: DeviceSpec) => spec.precopy && d.flags.includes("PRE_COPY")
  const initiatorsOf = (id: string) => spec.edges.filter(([, b]) => b === id).map(([a]) => a)
  const targetsOf = (id: string) => spec.edges.filter(([a]) => a === id).map(([, b]) => b)

  /**
   * When a device is out of `leaving` (the class its path starts in): each path leaves it at its
   * first arc, and for an initiator or a target that first arc never waits (it enters the
   * quiescent state; a device without P2P is never an initiator, so on the way up it has no
   * target to wait for). So the rule's waits need no fixed point.
   */
  const firstArcEnd = (d: DeviceSpec, path: ReadonlyArray<Step>): number => {
    const first = path[0]
    return first === undefined ? 0 : latency(d, first)
  }
  const walk = (
    d: DeviceSpec,
    path: ReadonlyArray<Step>,
    waitsOn: (from: string, to: string) => ReadonlyArray<number>
  ): number => {
    let t = 0
    for (const step of path) t = Math.max(t, ...waitsOn(step[0], step[1])) + latency(d, step)
    return t
  }
  const leftInitiating = new Map(
    spec.devices.map((d) => [d.id, firstArcEnd(d, switchoverPath(p2p(d), precopying(d)))] as const)
  )
  const ready = (d: DeviceSpec): number =>
    walk(d, switchoverPath(p2p(d), precopying(d)), (from, to) =>
      halted.has(to) && !halted.has(from) ? initiatorsOf(d.id).map((a) => leftInitiating.get(a) ?? 0) : []
    )
  const drained = channelFloor(
    spec.devices.map((d) => ({
      ready: ready(d),
      ms: (stopCopyBytesAtLeast(d, precopying(d)) / spec.bandwidthLimit) * 1000
    }))
  )

  // Validate: every device RESUMING → STOP, none waiting for another (halted to halted).
  const validated = Math.max(...spec.devices.map((d) => latency(d, ["RESUMING", "STOP"])))

  // Up: an arc into an initiating state waits until every target has left the halted states.
  const leftHalted = new Map(spec.devices.map((d) => [d.id, firstArcEnd(d, resumePath(p2p(d)))] as const))
  const walkUp = (d: DeviceSpec): number =>
    walk(d, resumePath(p2p(d)), (from, to) =>
      initiating.has(to) && !initiating.has(from) ? targetsOf(d.id).map((b) => leftHalted.get(b) ?? 0) : []
    )
  const resumed = Math.max(...spec.devices.map(walkUp))
  return drained + validated + resumed
}

/** Runs the scenario's migration on a virtual clock of its own; answers the source summary and events. */
const migrateSpec = (spec: Spec) =>
  Effect.gen(function* () {
    const doc = docOf(spec)
    const pair = yield* runOnVirtualTime(makePair(doc, doc, { writesPerSecond: spec.writesPerSecond, seed: 5 }))
    const out = yield* runOnVirtualTime(
      migrate(pair, {
        source: {
          precopy: spec.precopy,
          bandwidthLimit: spec.bandwidthLimit,
          chunkBytes: spec.chunkBytes,
          downtimeLimitMs: spec.downtimeLimitMs,
          ioConcurrency: spec.ioConcurrency,
          arcConcurrency: spec.arcConcurrency
        },
        destination: { ioConcurrency: spec.ioConcurrency, arcConcurrency: spec.arcConcurrency }
      }),
      { limitMs: 120_000 }
    )
    const summary = yield* successOf(out.source)
    yield* successOf(out.destination)
    expect(out.verified.every((same) => same)).toBe(true)
    yield* assertSafe(pair)
    return { summary, events: out.events }
  }).pipe(Effect.provide(TestClock.layer()))

const property = (check: (spec: Spec, run: Effect.Success<ReturnType<typeof migrateSpec>>) => void) =>
  fc.asyncProperty(specArb, (spec) =>
    Effect.runPromise(
      Effect.map(migrateSpec(spec), (run) => {
        check(spec, run)
      })
    )
  )

describe("the reported downtime", () => {
  it.effect("is never below the floor the scenario and the rules allow", () =>
    Effect.promise(() =>
      fc.assert(
        property((spec, { summary }) => {
          // Virtual time keeps whole nanoseconds: 1e-6 ms of rounding per arc at most.
          expect(summary.downtimeMs).toBeGreaterThanOrEqual(downtimeFloor(spec) - 1e-3)
        }),
        { numRuns: 40 }
      )
    )
  )

  it.effect("one 8 MiB chunk at 100 MB/s costs its 84 ms, not nothing", () =>
    Effect.gen(function* () {
      const spec: Spec = {
        devices: [
          {
            id: "gpu0",
            flags: ["STOP_COPY", "P2P"],
            stateSize: 8 * 1024 * 1024,
            precopyInitialBytes: 0,
            arcLatencyMs: 1,
            override: undefined
          }
        ],
        edges: [],
        writesPerSecond: 0,
        precopy: true,
        bandwidthLimit: 100_000_000,
        chunkBytes: 16 * 1024 * 1024,
        downtimeLimitMs: 300,
        ioConcurrency: undefined,
        arcConcurrency: undefined
      }
      const { summary } = yield* Effect.promise(() => Effect.runPromise(migrateSpec(spec)))
      // 3 switchover arcs + 83.9 ms of data + validate 1 ms + resume 2 arcs.
      const floor = downtimeFloor(spec)
      expect(floor).toBeCloseTo(
        3 + ((stopCopyBytesAtLeast(spec.devices[0] as DeviceSpec, false) / 1e8) * 1000 + 1 + 2),
        9
      )
      expect(summary.downtimeMs).toBeGreaterThanOrEqual(floor - 1e-3)
    })
  )
})

describe("the drain", () => {
  it.effect(
    "ends at the single-channel optimum for when the devices really reached STOP_COPY, whatever the limit",
    () =>
      Effect.promise(() =>
        fc.assert(
          property((spec, { events }) => {
            const ready = new Map<string, number>()
            const drained: Array<Extract<MigrationEvent, { _tag: "DeviceDrained" }>> = []
            for (const e of events) {
              if (e._tag === "GroupTransition" && e.side === "source" && e.step === "enterStopCopy") {
                const t = e.event
                if (t._tag === "ArcDone" && t.arc.to === "STOP_COPY") ready.set(t.device, t.at)
              }
              if (e._tag === "DeviceDrained" && e.side === "source") drained.push(e)
            }
            expect(drained.length).toBe(spec.devices.length)
            const jobs = drained.map((d) => ({
              ready: ready.get(d.device) ?? 0,
              ms: (d.bytes / spec.bandwidthLimit) * 1000
            }))
            const last = Math.max(...drained.map((d) => d.at))
            expect(last).toBeGreaterThanOrEqual(channelFloor(jobs) - 1e-4)
            expect(last).toBeLessThanOrEqual(channelFloor(jobs) + 1e-4)
          }),
          { numRuns: 30 }
        )
      )
  )
})
