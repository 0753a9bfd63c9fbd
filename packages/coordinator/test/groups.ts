import type { DeviceKind } from "@lockstep/device"
import { type State, States, supportsState } from "@lockstep/fsm"
import type { Plan } from "@lockstep/group"
import * as fc from "fast-check"
import { type DeviceDoc, groupOf } from "../../group/test/groups.js"

export { all, cliqueDoc, type DeviceDoc, groupOf, mixedDoc } from "../../group/test/groups.js"

/** States a device of these flags may be in or be asked for (ERROR excluded). */
export const statesFor = (flags: number): ReadonlyArray<State> =>
  States.filter((s) => s !== "ERROR" && supportsState(flags, s))

/** A random group description: kinds, flags and a topology among the four forms. */
export const groupDocArb = (maxDevices: number) =>
  fc
    .array(
      fc.record({
        kind: fc.constantFrom<DeviceKind>("pci", "pci", "pci", "pci", "pci", "pci", "mdev", "ccw", "ap"),
        p2p: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        precopy: fc.oneof({ weight: 2, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })
      }),
      { minLength: 1, maxLength: maxDevices }
    )
    .chain((specs) => {
      const devices: Array<DeviceDoc> = specs.map((s, i) => ({
        id: `${s.kind}${i}`,
        kind: s.kind,
        flags: ["STOP_COPY", ...(s.p2p ? (["P2P"] as const) : []), ...(s.precopy ? (["PRE_COPY"] as const) : [])]
      }))
      const pci = devices.filter((d) => d.kind === "pci").map((d) => d.id)
      const pairs = pci.flatMap((a) => pci.filter((b) => b !== a).map((b) => [a, b] as const))
      const edges = pairs.length === 0 ? fc.constant([]) : fc.subarray(pairs)
      const domain = fc.subarray(pci)
      return fc.record({
        devices: fc.constant(devices),
        topology: fc.oneof(
          { weight: 3, arbitrary: fc.constant("shared-iommu" as const) },
          { weight: 1, arbitrary: fc.constant("none" as const) },
          { weight: 2, arbitrary: fc.record({ edges }) },
          {
            weight: 2,
            arbitrary: fc.tuple(domain, edges).map(([members, edges]) => ({
              domains: [members],
              edges: edges.filter(([a, b]) => !(members.includes(a) && members.includes(b)))
            }))
          }
        )
      })
    })

/**
 * A transition request for a group: one start state for everyone (or a random supported one
 * per device) and one target (or a random supported one per device).
 */
export const requestArb = (devices: ReadonlyArray<{ readonly id: string; readonly flags: number }>) => {
  const perDevice = fc
    .tuple(...devices.map((d) => fc.constantFrom(...statesFor(d.flags))))
    .map((states) => Object.fromEntries(devices.map((d, i) => [d.id, states[i] ?? "RUNNING"])))
  const shared = fc.constantFrom<State>("RUNNING", "RUNNING", "RESUMING", "STOP", "STOP_COPY", "RUNNING_P2P")
  return fc.record({
    from: fc.oneof({ weight: 3, arbitrary: shared }, { weight: 1, arbitrary: perDevice }),
    to: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom<State>(...States.filter((s) => s !== "ERROR")) },
      { weight: 1, arbitrary: perDevice }
    )
  })
}

/** Every dependency of the plan that is not a device's own previous arc: (node id, index in `after`). */
export const crossDependencies = (plan: Plan): Array<{ readonly node: string; readonly dep: string }> => {
  const device = new Map(plan.arcs.map((a) => [a.id, a.device]))
  const out: Array<{ node: string; dep: string }> = []
  for (const arc of plan.arcs) {
    for (const dep of arc.after) if (device.get(dep) !== arc.device) out.push({ node: arc.id, dep })
  }
  for (const barrier of plan.barriers) for (const dep of barrier.after) out.push({ node: barrier.id, dep })
  return out
}

/** The plan without one dependency. */
export const withoutDependency = (plan: Plan, node: string, dep: string): Plan => ({
  ...plan,
  arcs: plan.arcs.map((a) => (a.id === node ? { ...a, after: a.after.filter((d) => d !== dep) } : a)),
  barriers: plan.barriers.map((b) => (b.id === node ? { ...b, after: b.after.filter((d) => d !== dep) } : b))
})

/**
 * A larger group built to be plannable: 16-64 devices, every device with P2P except possibly
 * one, pci devices spread over up to three P2P domains plus sparse edges between them (or one
 * shared-IOMMU clique), and a shared start and target state that need no PRE_COPY.
 */
export const largeGroupArb = fc
  .integer({ min: 16, max: 64 })
  .chain((n) =>
    fc.record({
      kinds: fc.array(fc.constantFrom<DeviceKind>("pci", "pci", "pci", "pci", "pci", "mdev", "ccw"), {
        minLength: n,
        maxLength: n
      }),
      precopy: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
      withoutP2P: fc.option(fc.nat(n - 1)),
      shared: fc.boolean(),
      domainOf: fc.array(fc.nat(3), { minLength: n, maxLength: n }),
      edges: fc.array(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: n })
    })
  )
  .map(({ kinds, precopy, withoutP2P, shared, domainOf, edges }) => {
    const devices: Array<DeviceDoc> = kinds.map((kind, i) => ({
      id: `${kind}${i}`,
      kind,
      flags: [
        "STOP_COPY",
        ...(i === withoutP2P ? [] : (["P2P"] as const)),
        ...(precopy[i] ? (["PRE_COPY"] as const) : [])
      ]
    }))
    const pci = (i: number) => devices[i]?.kind === "pci"
    const domains = [0, 1, 2].map((d) => devices.filter((_, i) => pci(i) && domainOf[i] === d).map((x) => x.id))
    const explicit = edges
      .filter(([a, b]) => a !== b && pci(a) && pci(b) && (domainOf[a] !== domainOf[b] || domainOf[a] === 3))
      .map(([a, b]) => [devices[a]?.id ?? "", devices[b]?.id ?? ""] as const)
    return groupOf({ devices, topology: shared ? "shared-iommu" : { domains, edges: explicit } })
  })
  .chain((group) =>
    fc.tuple(
      fc.constant(group),
      fc.record({
        from: fc.constantFrom<State>("RUNNING", "RESUMING", "STOP_COPY"),
        to: fc.constantFrom<State>("STOP", "STOP_COPY", "RESUMING", "RUNNING")
      })
    )
  )
