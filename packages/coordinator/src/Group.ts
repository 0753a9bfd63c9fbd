import { readFile } from "node:fs/promises"
import { type DeviceKind, DeviceKinds, kindMayDoP2P } from "@lockstep/device"
import { type Flags, FlagsSchema, hasFlag } from "@lockstep/fsm"
import { Data, Effect, Schema, type SchemaAST, SchemaIssue } from "effect"
import { type Edge, Topology } from "./Topology.js"

/**
 * One device of a group as decoded: its id, kind and migration flags, plus any backend keys
 * of the document (`sim`, `vfioUser`, …) kept as opaque values for the packages that own them.
 */
export interface GroupDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: Flags
  readonly [backend: string]: unknown
}

/**
 * The declared topology: `"shared-iommu"` (every `pci` device may write into every other
 * `pci` device), `"none"`, or explicit `edges` (`[initiator, target]`) and P2P `domains`
 * (lists of devices that all write into each other).
 */
export type TopologySpec =
  | "shared-iommu"
  | "none"
  | {
      readonly edges?: ReadonlyArray<Edge>
      readonly domains?: ReadonlyArray<ReadonlyArray<string>>
    }

/** A validated group: its devices in document order and the P2P edges between them. */
export interface Group {
  readonly devices: ReadonlyArray<GroupDevice>
  readonly topology: Topology
  /** The topology as written in the document (`"shared-iommu"` when it was absent). */
  readonly declaredTopology: TopologySpec
}

/** One reason a group description was refused, at a JSON path such as `devices[2].kind`. */
export interface GroupProblem {
  /** The JSON path of the offending value; empty for the document itself. */
  readonly path: string
  /** What is wrong, as a sentence a user can act on. */
  readonly reason: string
}

/** The group description is not valid; `problems` lists every reason, in document order. */
export class InvalidGroup extends Data.TaggedError("InvalidGroup")<{
  /** The file the description came from, if any. */
  readonly source?: string
  readonly problems: ReadonlyArray<GroupProblem>
}> {
  override get message(): string {
    const prefix = this.source === undefined ? "" : `${this.source}: `
    return this.problems.map((p) => `${prefix}${p.path === "" ? "" : `${p.path}: `}${p.reason}`).join("\n")
  }
}

/** The group file could not be read (missing, a directory, no permission). */
export class GroupFileUnreadable extends Data.TaggedError("GroupFileUnreadable")<{
  readonly path: string
  /** The system error code, e.g. `ENOENT`, when there is one. */
  readonly code: string | undefined
  readonly reason: string
}> {
  override get message(): string {
    return this.code === "ENOENT"
      ? `${this.path}: no such group file`
      : `${this.path}: cannot read the group file: ${this.reason}`
  }
}

/** The group file was read but is not JSON. */
export class GroupFileNotJson extends Data.TaggedError("GroupFileNotJson")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.path}: the group file is not valid JSON: ${this.reason}`
  }
}

/** Every way loading a group can fail. */
export type GroupError = InvalidGroup | GroupFileUnreadable | GroupFileNotJson

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

const DeviceDocument = Schema.StructWithRest(
  Schema.Struct({ id: Schema.String, kind: Schema.Literals(DeviceKinds), flags: FlagsSchema }),
  [Schema.Record(Schema.String, Schema.Unknown)]
)

const EdgeDocument = Schema.Tuple([Schema.String, Schema.String]).annotate({
  expected: "a pair [initiator, target] of device ids"
})

const TopologyDocument = Schema.Union([
  Schema.Literals(["shared-iommu", "none"]),
  Schema.Struct({
    edges: Schema.optionalKey(Schema.Array(EdgeDocument)),
    domains: Schema.optionalKey(Schema.Array(Schema.Array(Schema.String)))
  })
]).annotate({
  expected: `"shared-iommu", "none" or { "edges": [[initiator, target], …], "domains": [[id, …], …] }`
})

type Issues = Array<{ readonly path: ReadonlyArray<PropertyKey>; readonly issue: string }>

/**
 * What the group rules look at, read from a document that may not be well formed: an entry
 * the shape check refuses is `undefined` here (its own problem is reported by the shape
 * check), so the rules still judge everything else and every problem is reported at once.
 */
interface RulesView {
  readonly devices: ReadonlyArray<{
    readonly id: string | undefined
    readonly kind: DeviceKind | undefined
    /** Whether the flags include STOP_COPY; `undefined` when they cannot be read. */
    readonly stopCopy: boolean | undefined
  }>
  readonly edges: ReadonlyArray<readonly [string, string] | undefined>
  readonly domains: ReadonlyArray<ReadonlyArray<string | undefined>>
}

const viewOfDocument = (doc: {
  readonly devices: ReadonlyArray<GroupDevice>
  readonly topology?: TopologySpec
}): RulesView => ({
  devices: doc.devices.map((d) => ({ id: d.id, kind: d.kind, stopCopy: hasFlag(d.flags, "STOP_COPY") })),
  edges: typeof doc.topology === "object" ? (doc.topology.edges ?? []) : [],
  domains: typeof doc.topology === "object" ? (doc.topology.domains ?? []) : []
})

const isRecord = (u: unknown): u is { readonly [key: string]: unknown } =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** The rules' view of a raw document, or `undefined` when it has no device list to judge. */
const viewOfInput = (input: unknown): RulesView | undefined => {
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
const groupRules = (view: RulesView): Issues => {
  const issues: Issues = []
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

/**
 * The schema of a group description document. Decoding checks the shape (kinds, flag names)
 * and then the group rules: unique ids, STOP_COPY on every device, edges and domains only
 * between known `pci` devices, no self edges, disjoint domains.
 */
export const GroupDocument = Schema.Struct({
  devices: Schema.Array(DeviceDocument),
  topology: Schema.optionalKey(TopologyDocument)
}).check(Schema.makeFilter((doc) => groupRules(viewOfDocument(doc))))

/** The type `GroupDocument` decodes to. */
export type GroupDocument = typeof GroupDocument.Type

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((key, i) => {
      if (typeof key === "number") return `[${key}]`
      const name = String(key)
      if (!/^[A-Za-z_$][\w$]*$/.test(name)) return `[${quote(name)}]`
      return i === 0 ? name : `.${name}`
    })
    .join("")

const formatInput = (issue: SchemaIssue.Issue): string => {
  if (!SchemaIssue.hasInput(issue)) return ""
  const text = typeof issue.input === "bigint" ? String(issue.input) : JSON.stringify(issue.input)
  return `, got ${text ?? String(issue.input)}`
}

/** The noun for a value at `path`: `kind`, `topology`, or `flag` for an element of `flags`. */
const nounAt = (path: ReadonlyArray<PropertyKey>): string => {
  const last = path.at(-1)
  const key = typeof last === "number" ? path.at(-2) : last
  const noun = typeof key === "string" ? key : "value"
  return typeof last === "number" && noun.endsWith("s") ? noun.slice(0, -1) : noun
}

const annotation = (
  node: { readonly annotations?: SchemaAST.AST["annotations"] },
  key: "expected" | "description"
): string | undefined => {
  const value = node.annotations?.[key]
  return typeof value === "string" ? value : undefined
}

const describe = (ast: SchemaAST.AST): string => {
  const written = annotation(ast, "expected") ?? annotation(ast, "description")
  if (written !== undefined) return written
  switch (ast._tag) {
    case "String":
      return "a string"
    case "Number":
      return "a number"
    case "Objects":
      return "an object"
    case "Arrays":
      return "an array"
    case "Literal":
      return JSON.stringify(ast.literal)
    default:
      return ast._tag.toLowerCase()
  }
}

/**
 * A union that refused a value as a whole (no member came close): an unknown name reads
 * `unknown kind "gpu"; expected one of pci, mdev, ccw, ap`, anything else `expected …, got …`.
 */
const refusedByUnion = (union: SchemaAST.Union, path: ReadonlyArray<PropertyKey>, issue: SchemaIssue.Issue): string => {
  const names = union.types.map((t) => (t._tag === "Literal" ? t.literal : undefined))
  const named = names.every((n) => typeof n === "string")
  const written = annotation(union, "expected")
  const expected = written ?? (named ? `one of ${names.join(", ")}` : describe(union))
  const input = SchemaIssue.hasInput(issue) ? issue.input : undefined
  return typeof input === "string" && (named || written !== undefined)
    ? `unknown ${nounAt(path)} ${quote(input)}; expected ${expected}`
    : `expected ${expected}${formatInput(issue)}`
}

/** A problem before its path is written out. */
interface RawProblem {
  readonly path: ReadonlyArray<PropertyKey>
  readonly reason: string
}

/**
 * Turns a schema issue tree into problems with JSON paths and sentences, in document order.
 * `expected` carries the description of the filter being checked, for value issues under it.
 */
const problemsOf = (
  issue: SchemaIssue.Issue,
  path: ReadonlyArray<PropertyKey> = [],
  expected: string | undefined = undefined
): Array<RawProblem> => {
  const here = (reason: string): Array<RawProblem> => [{ path, reason }]
  switch (issue._tag) {
    case "Pointer":
      return problemsOf(issue.issue, [...path, ...issue.path], expected)
    case "Encoding":
      return problemsOf(issue.issue, path, expected)
    case "Filter":
      return problemsOf(issue.issue, path, annotation(issue.filter, "expected") ?? expected)
    case "Composite":
      return issue.issues.flatMap((inner) => problemsOf(inner, path, expected))
    case "AnyOf": {
      // Descend into the member that came close (an object for the edges form), unless the
      // value is not even of a member's type: then the union's own description says it best.
      const typeOnly = SchemaIssue.hasInput(issue) && (typeof issue.input !== "object" || issue.input === null)
      if (issue.issues.length === 0 || (typeOnly && annotation(issue.ast, "expected") !== undefined))
        return here(refusedByUnion(issue.ast, path, issue))
      return issue.issues.flatMap((inner) => problemsOf(inner, path, expected))
    }
    case "MissingKey":
      return here(issue.annotations?.messageMissingKey ?? "required, but missing")
    case "UnexpectedKey":
      return here("unexpected key")
    case "InvalidType":
      return here(`expected ${describe(issue.ast)}${formatInput(issue)}`)
    case "InvalidValue":
    case "Forbidden": {
      const message = issue.annotations?.message
      if (typeof message === "string") return here(message)
      return here(
        expected === undefined ? `invalid value${formatInput(issue)}` : `expected ${expected}${formatInput(issue)}`
      )
    }
    case "OneOf":
      return here(`matches more than one form${formatInput(issue)}`)
  }
}

/**
 * Every problem of a schema issue, each with its JSON path (`devices[2].sim.stateSize`) and a
 * sentence, in document order: for a caller that decodes a part of a document with its own
 * schema and reports the problems the way group problems are reported.
 */
export const describeIssue = (issue: SchemaIssue.Issue): ReadonlyArray<GroupProblem> =>
  problemsOf(issue).map((p) => ({ path: formatPath(p.path), reason: p.reason }))

/** Top-level keys in the order a group document is written. */
const keyRank = (key: PropertyKey): number => (key === "devices" ? 0 : key === "topology" ? 1 : 2)

/** Document order of two paths: by top-level key, then by every index; keys below the top keep their order. */
const byDocumentOrder = (x: RawProblem, y: RawProblem): number => {
  for (let k = 0; k < Math.min(x.path.length, y.path.length); k++) {
    const a = x.path[k]
    const b = y.path[k]
    if (a === b) continue
    if (typeof a === "number" && typeof b === "number") return a - b
    return k === 0 ? keyRank(a ?? "") - keyRank(b ?? "") : 0
  }
  return x.path.length - y.path.length
}

/**
 * Every problem of a refused document at once: the shape's, and the group rules' on whatever
 * parts of it are well formed (the rules' filter runs only on a well-formed document, which
 * would otherwise report the problems in stages), each once, in document order.
 */
const allProblems = (input: unknown, issue: SchemaIssue.Issue): ReadonlyArray<GroupProblem> => {
  const view = viewOfInput(input)
  const rules: Array<RawProblem> =
    view === undefined ? [] : groupRules(view).map(({ path, issue: reason }) => ({ path, reason }))
  const seen = new Set<string>()
  return [...problemsOf(issue), ...rules]
    .map((p) => ({ ...p, text: formatPath(p.path) }))
    .filter((p) => {
      const key = `${p.text}\u0000${p.reason}`
      if (seen.has(key)) return false
      seen.add(key)
      return true
    })
    .sort(byDocumentOrder)
    .map((p) => ({ path: p.text, reason: p.reason }))
}

const decodeDocument = Schema.decodeUnknownEffect(GroupDocument)

const buildGroup = (doc: GroupDocument): Group => {
  const declaredTopology: TopologySpec = doc.topology ?? "shared-iommu"
  const ids = doc.devices.map((d) => d.id)
  const topology =
    declaredTopology === "none"
      ? new Topology(ids, [], [])
      : declaredTopology === "shared-iommu"
        ? new Topology(ids, [doc.devices.filter((d) => kindMayDoP2P(d.kind)).map((d) => d.id)], [])
        : new Topology(ids, declaredTopology.domains ?? [], declaredTopology.edges ?? [])
  return { devices: doc.devices, topology, declaredTopology }
}

const decodeFrom = (input: unknown, source: string | undefined): Effect.Effect<Group, InvalidGroup> =>
  decodeDocument(input, { errors: "all", reportInput: true }).pipe(
    Effect.mapError(
      (error) =>
        new InvalidGroup({ ...(source === undefined ? {} : { source }), problems: allProblems(input, error.issue) })
    ),
    Effect.map(buildGroup)
  )

/**
 * Decodes and validates a group description (a parsed JSON value). Fails with `InvalidGroup`
 * listing every problem with its JSON path, e.g.
 * `devices[2].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap`.
 */
export const decodeGroup = (input: unknown): Effect.Effect<Group, InvalidGroup> => decodeFrom(input, undefined)

/** Reads a JSON group description from a file and decodes it with {@link decodeGroup}. */
export const loadGroupFile = Effect.fn("Group.loadGroupFile")(function* (path: string) {
  const text = yield* Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) =>
      new GroupFileUnreadable({
        path,
        code: cause instanceof Error && "code" in cause && typeof cause.code === "string" ? cause.code : undefined,
        reason: cause instanceof Error ? cause.message : String(cause)
      })
  })
  const json: unknown = yield* Effect.try({
    try: () => JSON.parse(text),
    catch: (cause) => new GroupFileNotJson({ path, reason: cause instanceof Error ? cause.message : String(cause) })
  })
  return yield* decodeFrom(json, path)
})
