import { type DeviceKind, DeviceKinds, kindMayDoP2P } from "@lockstep/device"

/**
 * The group rules a description must obey beyond its shape, written once over a view that a
 * well-formed document and a raw, possibly broken one both give: unique ids, STOP_COPY on
 * every device, edges and domains only between known devices that may do P2P, no self edges,
 * disjoint domains.
 */

/**
 * Why a kind can never be an end of a P2P edge (DESIGN.md section 2): the kernel keeps mdev
 * devices away from P2P pages, and s390 channel devices have no P2P at all.
 */
const noP2P: Partial<Record<DeviceKind, string>> = {
  mdev: "an mdev device, and mdev devices cannot access P2P pages",
  ccw: "a ccw device, and s390 channel devices have no P2P",
  ap: "an ap device, and s390 channel devices have no P2P"
}

const quote = (s: string): string => JSON.stringify(s)

/** One broken rule, at the path (keys and indices) of the value it is about. */
export type RuleIssues = Array<{ readonly path: ReadonlyArray<PropertyKey>; readonly issue: string }>

/**
 * What the group rules look at, read from a document that may not be well formed: an entry
 * the shape check refuses is `undefined` here (its own problem is reported by the shape
 * check), so the rules still judge everything else and every problem is reported at once.
 */
export interface RulesView {
  readonly devices: ReadonlyArray<{
    readonly id: string | undefined
    readonly kind: DeviceKind | undefined
    /** Whether the flags include STOP_COPY; `undefined` when they cannot be read. */
    readonly stopCopy: boolean | undefined
  }>
  readonly edges: ReadonlyArray<readonly [string, string] | undefined>
  readonly domains: ReadonlyArray<ReadonlyArray<string | undefined>>
}

const isRecord = (u: unknown): u is { readonly [key: string]: unknown } =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** The rules' view of a raw document, or `undefined` when it has no device list to judge. */
export const viewOfInput = (input: unknown): RulesView | undefined => {
  if (!isRecord(input) || !Array.isArray(input.devices)) return undefined
  const stopCopyOf = (flags: unknown): boolean | undefined =>
    Array.isArray(flags) ? flags.includes("STOP_COPY") : typeof flags === "number" ? (flags & 1) !== 0 : undefined
  const devices = input.devices.map((d: unknown) =>
    isRecord(d)
      ? {
          id: typeof d.id === "string" ? d.id : undefined,
          kind: DeviceKinds.find((k) => k === d.kind),
          stopCopy: stopCopyOf(d.flags)
        }
      : { id: undefined, kind: undefined, stopCopy: undefined }
  )
  const topology = isRecord(input.topology) ? input.topology : {}
  const strings = (u: unknown): Array<string | undefined> =>
    Array.isArray(u) ? u.map((s: unknown) => (typeof s === "string" ? s : undefined)) : []
  const edges = Array.isArray(topology.edges)
    ? topology.edges.map((e: unknown): readonly [string, string] | undefined => {
        const [a, b] = strings(e)
        return Array.isArray(e) && e.length === 2 && a !== undefined && b !== undefined ? [a, b] : undefined
      })
    : []
  const domains = Array.isArray(topology.domains) ? topology.domains.map(strings) : []
  return { devices, edges, domains }
}

/** At most this many ids are named when an edge names an unknown device. */
const namedIds = 8

/** The rules a well-formed document must also obey; each names the path it is about. */
export const groupRules = (view: RulesView): RuleIssues => {
  const issues: RuleIssues = []
  if (view.devices.length === 0) issues.push({ path: ["devices"], issue: "a group needs at least one device" })
  const firstIndex = new Map<string, number>()
  view.devices.forEach((device, i) => {
    if (device.id === undefined) return
    const first = firstIndex.get(device.id)
    if (device.id === "") issues.push({ path: ["devices", i, "id"], issue: "a device id cannot be empty" })
    else if (first !== undefined)
      issues.push({
        path: ["devices", i, "id"],
        issue: `duplicate id ${quote(device.id)}, already used by devices[${first}]`
      })
    else firstIndex.set(device.id, i)
    if (device.stopCopy === false)
      issues.push({
        path: ["devices", i, "flags"],
        issue: `${quote(device.id)} does not support STOP_COPY, which every migratable device needs`
      })
  })

  // The ids an unknown endpoint is compared with: each once, none empty.
  const known = [...firstIndex.keys()]
  const knownList = `${known.slice(0, namedIds).join(", ")}${known.length > namedIds ? ", …" : ""}`
  const endpoint = (path: ReadonlyArray<PropertyKey>, id: string): void => {
    const i = firstIndex.get(id)
    const device = i === undefined ? undefined : view.devices[i]
    if (device === undefined) {
      issues.push({
        path,
        issue:
          known.length === 0
            ? `unknown device ${quote(id)}; the group names no valid device`
            : `unknown device ${quote(id)}; the group has ${knownList}`
      })
    } else if (device.kind !== undefined && !kindMayDoP2P(device.kind)) {
      issues.push({
        path,
        issue: `${quote(id)} is ${noP2P[device.kind] ?? `a ${device.kind} device without P2P`}, so it cannot be an end of an edge`
      })
    }
  }

  view.edges.forEach((edge, i) => {
    if (edge === undefined) return
    const [initiator, target] = edge
    if (initiator === target) {
      issues.push({
        path: ["topology", "edges", i],
        issue: `self edge on ${quote(initiator)}; an edge joins two different devices`
      })
      return
    }
    endpoint(["topology", "edges", i, 0], initiator)
    endpoint(["topology", "edges", i, 1], target)
  })
  const domainOf = new Map<string, number>()
  view.domains.forEach((members, d) => {
    members.forEach((id, j) => {
      if (id === undefined) return
      const other = domainOf.get(id)
      if (other !== undefined) {
        issues.push({
          path: ["topology", "domains", d, j],
          issue:
            other === d
              ? `${quote(id)} is listed twice in this domain`
              : `${quote(id)} is already in domains[${other}]; a device belongs to at most one P2P domain`
        })
        return
      }
      domainOf.set(id, d)
      endpoint(["topology", "domains", d, j], id)
    })
  })
  return issues
}
