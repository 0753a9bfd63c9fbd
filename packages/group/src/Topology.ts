/**
 * A P2P edge `[initiator, target]`: the initiator may DMA into the target's memory (the
 * target's BARs are mapped in the initiator's IOMMU address space).
 */
export type Edge = readonly [initiator: string, target: string]

/**
 * A P2P domain: devices that may all write into all other members (a clique). A domain of
 * `m` devices stands for `m·(m-1)` edges but is stored, queried and planned as one unit,
 * so a shared-IOMMU group of 1024 GPUs costs O(1024), not O(1024²).
 */
export interface P2PDomain {
  readonly members: ReadonlyArray<string>
}

/**
 * The P2P edges of a group: disjoint P2P domains plus explicit edges that no domain implies.
 *
 * Queries cost the size of their answer (`targetsOf` of a clique member lists the clique);
 * `hasEdge`, `hasOutgoingEdge` and `edgeCount` are O(1). Only `edges()` enumerates every
 * edge one by one, lazily, for whoever really needs them (verification, display).
 */
export class Topology {
  /** Device ids in group order; every edge joins two of them. */
  readonly devices: ReadonlyArray<string>
  /** The cliques, each stored once. */
  readonly domains: ReadonlyArray<P2PDomain>
  /** Edges not implied by a domain, deduplicated, in declaration order. */
  readonly explicitEdges: ReadonlyArray<Edge>
  /** The number of edges, domains expanded. */
  readonly edgeCount: number

  /** @internal Device id → position in `devices`. */
  readonly position: ReadonlyMap<string, number>
  /** @internal Device position → index of its domain, or -1. */
  readonly domainOf: ReadonlyArray<number>
  /** @internal Domain index → member positions. */
  readonly domainMembers: ReadonlyArray<ReadonlyArray<number>>
  /** @internal Device position → targets through explicit edges. */
  readonly explicitTargets: ReadonlyArray<ReadonlyArray<number>>
  /** @internal Device position → initiators through explicit edges. */
  readonly explicitInitiators: ReadonlyArray<ReadonlyArray<number>>
  readonly #explicit: ReadonlySet<string>

  /**
   * @internal Builds a topology from validated input: ids are unique, domain members and edge
   * ends are known ids, domains are disjoint, no edge is a self edge. `decodeGroup` checks all
   * of this and is the public way to obtain one.
   */
  constructor(
    devices: ReadonlyArray<string>,
    domains: ReadonlyArray<ReadonlyArray<string>>,
    edges: ReadonlyArray<Edge>
  ) {
    this.devices = devices
    this.position = new Map(devices.map((id, i) => [id, i]))
    const domainOf = devices.map(() => -1)
    const domainMembers: Array<ReadonlyArray<number>> = []
    for (const members of domains) {
      if (members.length < 2) continue
      const positions = members.map((id) => this.#at(id))
      for (const p of positions) domainOf[p] = domainMembers.length
      domainMembers.push(positions)
    }
    this.domainOf = domainOf
    this.domainMembers = domainMembers
    this.domains = domainMembers.map((positions) => ({ members: positions.map((p) => devices[p] ?? "") }))

    const explicit = new Set<string>()
    const explicitEdges: Array<Edge> = []
    const targets: Array<Array<number>> = devices.map(() => [])
    const initiators: Array<Array<number>> = devices.map(() => [])
    for (const [initiator, target] of edges) {
      const a = this.#at(initiator)
      const b = this.#at(target)
      const key = `${a}>${b}`
      if (a === b || explicit.has(key) || this.#sameDomain(a, b)) continue
      explicit.add(key)
      explicitEdges.push([initiator, target])
      targets[a]?.push(b)
      initiators[b]?.push(a)
    }
    this.#explicit = explicit
    this.explicitEdges = explicitEdges
    this.explicitTargets = targets
    this.explicitInitiators = initiators
    this.edgeCount = domainMembers.reduce((n, m) => n + m.length * (m.length - 1), explicitEdges.length)
  }

  #at(id: string): number {
    const p = this.position.get(id)
    if (p === undefined) throw new RangeError(`Topology: unknown device ${JSON.stringify(id)}`)
    return p
  }

  #sameDomain(a: number, b: number): boolean {
    const d = this.domainOf[a] ?? -1
    return d >= 0 && d === this.domainOf[b]
  }

  #peers(id: string, explicit: ReadonlyArray<ReadonlyArray<number>>): ReadonlyArray<string> {
    const p = this.position.get(id)
    if (p === undefined) return []
    const out: Array<string> = []
    for (const q of this.domainMembers[this.domainOf[p] ?? -1] ?? []) {
      if (q !== p) out.push(this.devices[q] ?? "")
    }
    for (const q of explicit[p] ?? []) out.push(this.devices[q] ?? "")
    return out
  }

  /** The devices `id` may write into. Empty for an unknown id. */
  targetsOf(id: string): ReadonlyArray<string> {
    return this.#peers(id, this.explicitTargets)
  }

  /** The devices that may write into `id`. Empty for an unknown id. */
  initiatorsOf(id: string): ReadonlyArray<string> {
    return this.#peers(id, this.explicitInitiators)
  }

  /** Whether `initiator` may write into `target`. */
  hasEdge(initiator: string, target: string): boolean {
    const a = this.position.get(initiator)
    const b = this.position.get(target)
    if (a === undefined || b === undefined || a === b) return false
    return this.#sameDomain(a, b) || this.#explicit.has(`${a}>${b}`)
  }

  /** Whether `id` may write into any device: the devices that need P2P support. */
  hasOutgoingEdge(id: string): boolean {
    const p = this.position.get(id)
    if (p === undefined) return false
    return (this.domainOf[p] ?? -1) >= 0 || (this.explicitTargets[p]?.length ?? 0) > 0
  }

  /** Every edge, domains expanded, generated lazily: domains first, then explicit edges. */
  *edges(): Generator<Edge> {
    for (const members of this.domainMembers) {
      for (const a of members) {
        for (const b of members) {
          if (a !== b) yield [this.devices[a] ?? "", this.devices[b] ?? ""]
        }
      }
    }
    yield* this.explicitEdges
  }
}
