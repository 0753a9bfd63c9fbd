import type { DeviceKind } from "@lockstep/device"
import type { Flags } from "@lockstep/fsm"

/**
 * Which P2P edges a group has, from its description alone (DESIGN.md section 2), for the
 * reference model and for the fabric the tests build: never from the coordinator's `Topology`.
 */

/** One device as a group description gives it. */
export interface ModelDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: Flags
}

/** A topology as a group description writes it. */
export type ModelTopology =
  | "shared-iommu"
  | "none"
  | {
      readonly edges?: ReadonlyArray<readonly [string, string]>
      readonly domains?: ReadonlyArray<ReadonlyArray<string>>
    }

/** An edge `[initiator, target]`: the initiator may write into the target's memory. */
export type ModelEdge = readonly [initiator: string, target: string]

/**
 * Kinds that may be an end of an edge. mdev devices cannot access P2P pages (the kernel blocks
 * them) and s390 channel devices (ccw, ap) have no P2P at all.
 */
const mayDoP2P: Readonly<Record<DeviceKind, boolean>> = { pci: true, mdev: false, ccw: false, ap: false }

/** The edges of a valid description, or every reason it is not one. */
export type EdgeList =
  | { readonly ok: true; readonly edges: ReadonlyArray<ModelEdge> }
  | { readonly ok: false; readonly problems: ReadonlyArray<string> }

/**
 * The edges of a group:
 * - `shared-iommu` (the default): every P2P-capable device may write into every other one (one
 *   IOMMU address space, as QEMU assumes);
 * - `none`: no edges;
 * - explicit: the listed edges, plus every ordered pair of distinct members of each P2P domain.
 * An explicit edge or domain member that is not a P2P-capable device of the group, a self edge, or
 * a device in two domains makes the description invalid. Edges come out once each, sorted.
 */
export const edgesOf = (devices: ReadonlyArray<ModelDevice>, topology: ModelTopology = "shared-iommu"): EdgeList => {
  const capable = devices.filter((d) => mayDoP2P[d.kind]).map((d) => d.id)
  if (topology === "none") return { ok: true, edges: [] }
  const pairs: Array<ModelEdge> = []
  const problems: Array<string> = []
  const clique = (members: ReadonlyArray<string>) => {
    for (const a of members) for (const b of members) if (a !== b) pairs.push([a, b])
  }
  if (topology === "shared-iommu") clique(capable)
  else {
    const end = (id: string, where: string) => {
      if (!devices.some((d) => d.id === id)) problems.push(`${where}: ${id} is not in the group`)
      else if (!capable.includes(id)) problems.push(`${where}: ${id} cannot do P2P`)
    }
    for (const [a, b] of topology.edges ?? []) {
      end(a, "edge")
      end(b, "edge")
      if (a === b) problems.push(`edge: ${a} → ${a} is a self edge`)
      pairs.push([a, b])
    }
    const member = new Set<string>()
    for (const members of topology.domains ?? []) {
      for (const id of members) {
        end(id, "domain")
        if (member.has(id)) problems.push(`domain: ${id} is in more than one domain, or twice in one`)
        member.add(id)
      }
      clique(members)
    }
  }
  if (problems.length > 0) return { ok: false, problems }
  const unique = new Map(pairs.map((e) => [`${e[0]}\u0000${e[1]}`, e] as const))
  return { ok: true, edges: [...unique.keys()].sort().map((k) => unique.get(k) ?? ["", ""]) }
}

/** The edges of a description the caller knows is valid; throws otherwise (a test's own mistake). */
export const validEdgesOf = (
  devices: ReadonlyArray<ModelDevice>,
  topology?: ModelTopology
): ReadonlyArray<ModelEdge> => {
  const list = edgesOf(devices, topology)
  if (!list.ok) throw new Error(`the model refuses this group description: ${list.problems.join("; ")}`)
  return list.edges
}

/**
 * Migratable iff every device with an outgoing edge has P2P (it can stop writing before its
 * targets halt); the blockers are the devices that write into someone without it, in group order.
 */
export const blockersOf = (devices: ReadonlyArray<ModelDevice>, edges: ReadonlyArray<ModelEdge>): Array<string> =>
  devices.filter((d) => (d.flags & 2) === 0 && edges.some(([a]) => a === d.id)).map((d) => d.id)

/** A group as the model sees it: its devices and the edges its description gives. */
export interface ModelGroup {
  readonly devices: ReadonlyArray<ModelDevice>
  readonly edges: ReadonlyArray<ModelEdge>
}

/** The model's view of a valid group description (as `decodeGroup` takes it). */
export const modelGroup = (doc: {
  readonly devices: ReadonlyArray<ModelDevice>
  readonly topology?: ModelTopology
}): ModelGroup => ({
  devices: doc.devices.map((d) => ({ id: d.id, kind: d.kind, flags: d.flags })),
  edges: validEdgesOf(doc.devices, doc.topology)
})
