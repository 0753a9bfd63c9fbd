import type { DeviceKind } from "@lockstep/device"
import type { Flags, State } from "@lockstep/fsm"
import type { ModelDevice, ModelTopology } from "../model/Model.js"
import { flagBits, requestableStates, supports } from "../model/Model.js"

/**
 * Every small group, once: devices of every kind and flag set, under every topology description
 * (`shared-iommu`, `none`, every set of explicit edges among the P2P-capable devices, and every
 * P2P domain with every set of explicit edges beside it), up to renaming the devices.
 */

/** A group description with its devices in order (ids `d0`, `d1`, …). */
export interface SmallGroup {
  readonly devices: ReadonlyArray<ModelDevice>
  readonly topology: ModelTopology
}

/** Every flag set a group member may have (STOP_COPY is mandatory). */
export const memberFlags: ReadonlyArray<Flags> = [1, 3, 5, 7]

/** The device kinds; mdev, ccw and ap differ only in why they are never an end of an edge. */
export const allKinds: ReadonlyArray<DeviceKind> = ["pci", "mdev", "ccw", "ap"]

const pairs = (ids: ReadonlyArray<string>): Array<readonly [string, string]> =>
  ids.flatMap((a) => ids.filter((b) => b !== a).map((b) => [a, b] as const))

const subsets = <A>(items: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = [[]]
  for (const item of items) for (const s of out.slice()) out.push([...s, item])
  return out
}

const permutations = (n: number): Array<Array<number>> =>
  n <= 1
    ? [[0].slice(0, n)]
    : permutations(n - 1).flatMap((p) => Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)]))

/** Every topology description of a group whose P2P-capable devices are `pci`. */
const topologies = (pci: ReadonlyArray<string>): Array<ModelTopology> => {
  const out: Array<ModelTopology> = ["shared-iommu", "none"]
  for (const edges of subsets(pairs(pci))) out.push({ edges })
  for (const domain of subsets(pci).filter((s) => s.length >= 2)) {
    const outside = pairs(pci).filter(([a, b]) => !(domain.includes(a) && domain.includes(b)))
    for (const edges of subsets(outside)) out.push({ domains: [domain], edges })
  }
  return out
}

/** A key equal for two groups iff one is the other with its devices renamed. */
const canonicalKey = (g: SmallGroup): string => {
  const n = g.devices.length
  let best: string | undefined
  for (const p of permutations(n)) {
    // Device i of the group becomes device p[i].
    const name = (id: string) => `d${p[Number(id.slice(1))] ?? 0}`
    const devices = g.devices
      .map((d) => ({ i: p[Number(d.id.slice(1))] ?? 0, d }))
      .sort((x, y) => x.i - y.i)
      .map(({ d }) => `${d.kind}:${d.flags}`)
    const t = g.topology
    const topology =
      typeof t === "string"
        ? t
        : JSON.stringify({
            domains: (t.domains ?? []).map((m) => m.map(name).sort()).sort(),
            edges: (t.edges ?? []).map(([a, b]) => `${name(a)}>${name(b)}`).sort()
          })
    const key = `${devices.join(",")}|${topology}`
    if (best === undefined || key < best) best = key
  }
  return best ?? ""
}

/** Every group of `n` devices whose kinds are drawn from `kinds`, once up to renaming. */
export const groupsOf = (
  n: number,
  kinds: ReadonlyArray<DeviceKind>,
  flags: ReadonlyArray<Flags> = memberFlags
): Array<SmallGroup> => {
  const members = kinds.flatMap((kind) => flags.map((f) => ({ kind, flags: f })))
  const seen = new Set<string>()
  const out: Array<SmallGroup> = []
  const choose = (prefix: Array<{ kind: DeviceKind; flags: Flags }>, from: number) => {
    if (prefix.length === n) {
      const devices = prefix.map((m, i) => ({ id: `d${i}`, kind: m.kind, flags: m.flags }))
      for (const topology of topologies(devices.filter((d) => d.kind === "pci").map((d) => d.id))) {
        const g = { devices, topology }
        const key = canonicalKey(g)
        if (seen.has(key)) continue
        seen.add(key)
        out.push(g)
      }
      return
    }
    for (let i = from; i < members.length; i++) choose([...prefix, members[i] ?? { kind: "pci", flags: 1 }], i)
  }
  choose([], 0)
  return out
}

/** The state a device takes when the group is asked for `s`: `s`, or the nearest state it supports. */
export const adapted = (flags: Flags, s: State): State => {
  if (supports(flags, s)) return s
  if (s === "PRE_COPY_P2P") return (flags & flagBits.PRE_COPY) !== 0 ? "PRE_COPY" : adapted(flags, "RUNNING_P2P")
  return "RUNNING"
}

/** A group's states when every device is asked for `s` (adapted to what each supports). */
export const uniform = (devices: ReadonlyArray<ModelDevice>, s: State): Record<string, State> =>
  Object.fromEntries(devices.map((d) => [d.id, adapted(d.flags, s)]))

/** Every state a device with `flags` can be in and be asked for. */
export const statesOf = (flags: Flags): ReadonlyArray<State> => requestableStates.filter((s) => supports(flags, s))

/** Every assignment of one state per device, each from `statesOf` its flags. */
export const everyAssignment = (devices: ReadonlyArray<ModelDevice>): Array<Record<string, State>> =>
  devices.reduce<Array<Record<string, State>>>(
    (acc, d) => acc.flatMap((a) => statesOf(d.flags).map((s) => ({ ...a, [d.id]: s }))),
    [{}]
  )

/**
 * Every group of `n` pci devices with flags from `flags` and every set of explicit edges, once up
 * to renaming: what the executor sees of any group (kinds and topology descriptions reach it only
 * as edges, which the decisions check for every kind and description).
 */
export const edgeGroupsOf = (n: number, flags: ReadonlyArray<Flags> = memberFlags): Array<SmallGroup> =>
  groupsOf(n, ["pci"], flags).filter((g) => typeof g.topology !== "string" && (g.topology.domains ?? []).length === 0)

/** Every group of `n` pci devices (each flag multiset once) under each of the topologies named. */
export const flagGroupsOf = (
  n: number,
  topologies: ReadonlyArray<"shared-iommu" | "none">,
  flags: ReadonlyArray<Flags> = memberFlags
): Array<SmallGroup> => {
  const out: Array<SmallGroup> = []
  const choose = (prefix: Array<Flags>, from: number) => {
    if (prefix.length === n) {
      const devices = prefix.map((f, i) => ({ id: `d${i}`, kind: "pci" as const, flags: f }))
      for (const topology of topologies) out.push({ devices, topology })
      return
    }
    for (let i = from; i < flags.length; i++) choose([...prefix, flags[i] ?? 1], i)
  }
  choose([], 0)
  return out
}
