import type { ErrorPolicy, StateAssignment } from "@lockstep/coordinator"
import type { DeviceKind } from "@lockstep/device"
import type { Flags, State } from "@lockstep/fsm"
import type { Fault, FaultPlan } from "@lockstep/sim"
import * as fc from "fast-check"
import { directArcs, flagBits, requestableStates, supports } from "../model/Model.js"

/**
 * What the fuzzers generate: random groups (kinds, flag sets, topologies, blocked ones
 * included), fault plans over every fault kind of the simulator, and transition requests.
 * Everything is plain data, so fast-check prints and shrinks it.
 */

/** One device of a generated group document. */
export interface DeviceDoc {
  readonly id: string
  readonly kind: DeviceKind
  /** The uAPI mask; STOP_COPY always set (a device without it is not a group member). */
  readonly flags: Flags
  readonly sim: {
    readonly arcLatencyMs: number
    readonly faults: FaultPlan
  }
}

/** The topology forms of a group document. */
export type TopologyDoc =
  | "shared-iommu"
  | "none"
  | {
      readonly domains: ReadonlyArray<ReadonlyArray<string>>
      readonly edges: ReadonlyArray<readonly [string, string]>
    }

/** A generated group document, as `decodeGroup` takes it. */
export interface GroupDoc {
  readonly devices: ReadonlyArray<DeviceDoc>
  readonly topology: TopologyDoc
}

const kindArb = fc.constantFrom<DeviceKind>("pci", "pci", "pci", "pci", "pci", "mdev", "ccw", "ap")

/** STOP_COPY plus P2P (likely: without it an initiator blocks its group) and PRE_COPY. */
const flagsArb: fc.Arbitrary<Flags> = fc
  .tuple(fc.integer({ min: 0, max: 4 }), fc.boolean())
  .map(([p2p, precopy]) => 1 | (p2p > 0 ? 2 : 0) | (precopy ? 4 : 0))

/**
 * A fault of any kind the simulator knows, aimed at the arcs a device with `flags` has: one fault,
 * or a hung arc that lands anyway when it is interrupted (its timeout), in its target or in ERROR.
 */
export const faultArb = (flags: Flags): fc.Arbitrary<ReadonlyArray<Fault>> => {
  const arcs = directArcs(flags)
  const selector = fc.record(
    {
      arc: fc.constantFrom(...arcs),
      keep: fc.constantFrom("both", "from", "to", "none"),
      nth: fc.integer({ min: 1, max: 12 })
    },
    { requiredKeys: ["arc", "keep"] }
  )
  const arcSelector = selector.map(({ arc, keep, nth }) => ({
    ...(keep === "both" || keep === "from" ? { from: arc.from } : {}),
    ...(keep === "both" || keep === "to" ? { to: arc.to } : {}),
    ...(nth === undefined ? {} : { nth })
  }))
  const times = fc.oneof(
    { weight: 8, arbitrary: fc.constant(1) },
    { weight: 2, arbitrary: fc.constant(2) },
    { weight: 1, arbitrary: fc.constant("always" as const) }
  )
  const nth = fc.integer({ min: 1, max: 4 })
  const single: fc.Arbitrary<Fault> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .record({
          at: arcSelector,
          leaveIn: fc.constantFrom("original" as const, "target" as const, "error" as const),
          code: fc.constantFrom("EIO", "EAGAIN", "ENODEV"),
          times
        })
        .map(({ at, leaveIn, code, times }): Fault => ({ _tag: "FailArc", ...at, leaveIn, code, times }))
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ at: arcSelector, times })
        .map(({ at, times }): Fault => ({ _tag: "HangArc", ...at, times }))
    },
    { weight: 1, arbitrary: nth.map((n): Fault => ({ _tag: "CorruptData", nth: n })) },
    { weight: 1, arbitrary: nth.map((n): Fault => ({ _tag: "TruncateData", nth: n })) },
    { weight: 1, arbitrary: nth.map((n): Fault => ({ _tag: "FailRead", nth: n })) },
    { weight: 1, arbitrary: nth.map((n): Fault => ({ _tag: "FailWrite", nth: n })) },
    {
      weight: 1,
      arbitrary: fc
        .record({ at: arcSelector, leaveIn: fc.constantFrom("target" as const, "error" as const) })
        .map(({ at, leaveIn }): Fault => ({ _tag: "LandOnInterrupt", ...at, leaveIn }))
    }
  )
  const landsAnyway: fc.Arbitrary<ReadonlyArray<Fault>> = fc
    .record({ at: arcSelector, leaveIn: fc.constantFrom("target" as const, "error" as const) })
    .map(({ at, leaveIn }) => [
      { _tag: "HangArc", ...at },
      { _tag: "LandOnInterrupt", ...at, leaveIn }
    ])
  return fc.oneof(
    { weight: 6, arbitrary: single.map((f): ReadonlyArray<Fault> => [f]) },
    { weight: 1, arbitrary: landsAnyway }
  )
}

const pairsOf = (ids: ReadonlyArray<string>): Array<readonly [string, string]> =>
  ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [a, b] as const))

/** Shared IOMMU, none, or explicit P2P domains (disjoint cliques) and edges among the pci devices. */
const topologyArb = (devices: ReadonlyArray<DeviceDoc>): fc.Arbitrary<TopologyDoc> => {
  const pci = devices.filter((d) => d.kind === "pci").map((d) => d.id)
  const explicit = fc
    .record({
      domainOf: fc.array(fc.integer({ min: -1, max: 1 }), { minLength: pci.length, maxLength: pci.length }),
      edges:
        pci.length < 2
          ? fc.constant([])
          : fc.subarray(pairsOf(pci), { maxLength: Math.min(2 * pci.length, pci.length * (pci.length - 1)) })
    })
    .map(({ domainOf, edges }): TopologyDoc => {
      const domains = [0, 1].map((k) => pci.filter((_, i) => domainOf[i] === k)).filter((m) => m.length > 1)
      return { domains, edges }
    })
  return fc.oneof(
    { weight: 3, arbitrary: fc.constant("shared-iommu" as const) },
    { weight: 1, arbitrary: fc.constant("none" as const) },
    { weight: 4, arbitrary: explicit }
  )
}

/** Options of {@link groupDocArb}. */
export interface GroupDocOptions {
  readonly minDevices?: number
  readonly maxDevices?: number
  /** Probability weight of a device having a fault plan at all, 0-10. Default 3. */
  readonly faultWeight?: number
  /** Arc latencies are drawn from 0 to this many ms. Default 4. */
  readonly maxLatencyMs?: number
}

/** A random group document: sizes, kinds, flag sets, latencies, fault plans and a topology. */
export const groupDocArb = (options: GroupDocOptions = {}): fc.Arbitrary<GroupDoc> => {
  const faultWeight = options.faultWeight ?? 3
  return fc
    .array(fc.tuple(kindArb, flagsArb), {
      minLength: options.minDevices ?? 1,
      maxLength: options.maxDevices ?? 12
    })
    .chain((specs) =>
      fc.tuple(
        ...specs.map(([kind, flags], i) =>
          fc
            .record({
              arcLatencyMs: fc.integer({ min: 0, max: options.maxLatencyMs ?? 4 }),
              faults: fc.oneof(
                { weight: 10 - faultWeight, arbitrary: fc.constant<FaultPlan>([]) },
                {
                  weight: faultWeight,
                  arbitrary: fc.array(faultArb(flags), { minLength: 1, maxLength: 3 }).map((fs) => fs.flat())
                }
              )
            })
            .map((sim): DeviceDoc => ({ id: `${kind}${i}`, kind, flags, sim }))
        )
      )
    )
    .chain((devices) => topologyArb(devices).map((topology): GroupDoc => ({ devices, topology })))
}

/** The fallback of a state a device cannot be in: the nearest one it supports. */
const supportedTarget = (flags: Flags, s: State): State => {
  if (supports(flags, s)) return s
  if (s === "PRE_COPY_P2P")
    return (flags & flagBits.PRE_COPY) !== 0 ? "PRE_COPY" : supportedTarget(flags, "RUNNING_P2P")
  return "RUNNING"
}

/**
 * How a request is generated: one state for everyone, kept as is (devices that cannot be in it
 * make the planner refuse), or adapted per device, or a random supported state per device.
 */
export type RequestSpec =
  | { readonly _tag: "Same"; readonly state: State }
  | { readonly _tag: "Adapted"; readonly state: State }
  | { readonly _tag: "Mixed"; readonly picks: ReadonlyArray<number> }

const requestStates = requestableStates

export const requestSpecArb: fc.Arbitrary<RequestSpec> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...requestStates).map((state): RequestSpec => ({ _tag: "Same", state })) },
  { weight: 6, arbitrary: fc.constantFrom(...requestStates).map((state): RequestSpec => ({ _tag: "Adapted", state })) },
  {
    weight: 2,
    arbitrary: fc
      .array(fc.nat(20), { minLength: 12, maxLength: 12 })
      .map((picks): RequestSpec => ({ _tag: "Mixed", picks }))
  }
)

/** The request a spec stands for in a group. */
export const requestFor = (
  spec: RequestSpec,
  devices: ReadonlyArray<{ readonly id: string; readonly flags: Flags }>
): StateAssignment => {
  switch (spec._tag) {
    case "Same":
      return spec.state
    case "Adapted":
      return Object.fromEntries(devices.map((d) => [d.id, supportedTarget(d.flags, spec.state)]))
    case "Mixed":
      return Object.fromEntries(
        devices.map((d, i) => {
          const options = requestStates.filter((s) => supports(d.flags, s))
          return [d.id, options[(spec.picks[i] ?? 0) % options.length] ?? "RUNNING"]
        })
      )
  }
}

export const policyArb: fc.Arbitrary<ErrorPolicy> = fc.constantFrom("reset", "quarantine")

/** A bound on arcs in flight: none (unbounded), mostly; sometimes 1 to 3 (the migration and the Promise facade set one). */
export const concurrencyArb: fc.Arbitrary<number | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 }) }
)

/** A halted state a group can rest in, and the way up from it a second transition takes. */
const haltedStarts: ReadonlyArray<{ readonly state: State; readonly up: ReadonlyArray<readonly [State, State]> }> = [
  {
    state: "RESUMING",
    up: [
      ["RESUMING", "STOP"],
      ["STOP", "RUNNING_P2P"],
      ["STOP", "RUNNING"],
      ["RUNNING_P2P", "RUNNING"]
    ]
  },
  {
    state: "STOP",
    up: [
      ["STOP", "RUNNING_P2P"],
      ["STOP", "RUNNING"],
      ["RUNNING_P2P", "RUNNING"]
    ]
  },
  {
    state: "STOP_COPY",
    up: [
      ["STOP_COPY", "STOP"],
      ["STOP", "RUNNING_P2P"],
      ["STOP", "RUNNING"],
      ["RUNNING_P2P", "RUNNING"]
    ]
  }
]

/** A scenario built to make a rollback combine a quarantined device, one-way edges and halted starts. */
export interface RollbackCombination {
  readonly doc: GroupDoc
  /** First to the halted state (clean), then up, quarantining whoever fails into ERROR. */
  readonly steps: readonly [
    { readonly request: RequestSpec; readonly policy: ErrorPolicy },
    { readonly request: RequestSpec; readonly policy: ErrorPolicy }
  ]
}

/**
 * Rollbacks that are rare at random, generated on purpose: 2 to 5 pci devices (P2P likely) and
 * perhaps one of another kind, joined only by one-way explicit edges (never both directions); the
 * group first goes to a halted state (RESUMING, STOP or STOP_COPY), then back up under the
 * quarantine policy, while an initiator fails into ERROR on an arc of the way up (and perhaps a
 * second device fails back where it was). The rollback must then leave the initiator in ERROR,
 * reset its targets (they started halted) and take everyone else back down, the one-way edges
 * deciding who is a target.
 */
export const rollbackCombinationArb: fc.Arbitrary<RollbackCombination> = fc
  .record({
    pci: fc.array(fc.constantFrom<Flags>(3, 7, 7, 1), { minLength: 2, maxLength: 5 }),
    other: fc.option(fc.constantFrom<DeviceKind>("mdev", "ccw", "ap"), { nil: undefined }),
    start: fc.constantFrom(...haltedStarts),
    orientation: fc.array(fc.constantFrom(0, 1, 1, 2, 2), { minLength: 10, maxLength: 10 }),
    culprit: fc.nat(),
    pick: fc.nat(),
    bystander: fc.option(fc.nat(), { nil: undefined }),
    latencies: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 6, maxLength: 6 }),
    target: fc.constantFrom<State>("RUNNING", "RUNNING", "RUNNING_P2P", "PRE_COPY")
  })
  .map(({ pci, other, start, orientation, culprit, pick, bystander, latencies, target }): RollbackCombination => {
    const ids = pci.map((_, i) => `pci${i}`)
    const edges: Array<readonly [string, string]> = []
    let k = 0
    for (let i = 0; i < ids.length; i++)
      for (let j = i + 1; j < ids.length; j++) {
        const o = orientation[k++ % orientation.length]
        const a = ids[i] ?? ""
        const b = ids[j] ?? ""
        if (o === 1) edges.push([a, b])
        else if (o === 2) edges.push([b, a])
      }
    const initiators = ids.filter((id) => edges.some(([a]) => a === id))
    const guilty = initiators.length === 0 ? undefined : initiators[culprit % initiators.length]
    const upArc = start.up[pick % start.up.length] ?? ["STOP", "RUNNING"]
    const devices: Array<DeviceDoc> = pci.map((flags, i) => {
      const id = ids[i] ?? ""
      const faults: Array<Fault> = []
      if (id === guilty) faults.push({ _tag: "FailArc", from: upArc[0], to: upArc[1], leaveIn: "error", times: 1 })
      if (bystander !== undefined && i === bystander % pci.length && id !== guilty)
        faults.push({ _tag: "FailArc", from: upArc[0], leaveIn: "original", times: 1 })
      return { id, kind: "pci", flags, sim: { arcLatencyMs: latencies[i] ?? 1, faults } }
    })
    if (other !== undefined)
      devices.push({ id: `${other}${pci.length}`, kind: other, flags: 3, sim: { arcLatencyMs: 1, faults: [] } })
    return {
      doc: { devices, topology: { domains: [], edges } },
      steps: [
        { request: { _tag: "Adapted", state: start.state }, policy: "reset" },
        { request: { _tag: "Adapted", state: target }, policy: "quarantine" }
      ]
    }
  })
