import { type DeviceKind, kindMayDoP2P } from "@lockstep/device"
import type { Flags } from "@lockstep/fsm"
import { Effect, Schema } from "effect"
import { GroupDocument } from "./GroupDocument.js"
import { GroupError, GroupFileNotJson, GroupFileUnreadable, InvalidGroup } from "./GroupError.js"
import { allProblems } from "./GroupProblem.js"
import { type JsonFileError, readJsonFile } from "./JsonFile.js"
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

const decodeFrom = (input: unknown, source: string | undefined): Effect.Effect<Group, GroupError> =>
  decodeDocument(input, { errors: "all", reportInput: true }).pipe(
    Effect.mapError(
      (error) =>
        new GroupError({
          reason: new InvalidGroup({
            ...(source === undefined ? {} : { source }),
            problems: allProblems(input, error.issue)
          })
        })
    ),
    Effect.map(buildGroup)
  )

/**
 * Decodes and validates a group description (a parsed JSON value). Fails with a `GroupError` whose
 * reason is `InvalidGroup`, listing every problem with its JSON path, e.g.
 * `devices[2].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap`; `source` (the file
 * it came from) prefixes each.
 */
export const decodeGroup = (input: unknown, source?: string): Effect.Effect<Group, GroupError> =>
  decodeFrom(input, source)

/** A group file that could not be read, or is not JSON, as the group's error. */
const unreadable = (path: string, { reason }: JsonFileError): GroupError =>
  new GroupError({
    reason:
      reason._tag === "JsonFileUnreadable"
        ? new GroupFileUnreadable({ path, code: reason.code, detail: reason.detail })
        : reason._tag === "JsonFileNotJson"
          ? new GroupFileNotJson({ path, detail: reason.detail })
          : new InvalidGroup({ source: path, problems: allProblems(reason.document, reason.issue) })
  })

/**
 * The JSON of a group file (with `FileSystem`), not yet checked: for a caller that completes the
 * document before {@link decodeGroup} (a device whose flags its server or the kernel gives).
 */
export const readGroupFile = Effect.fn("Group.readGroupFile")(function* (path: string) {
  return yield* readJsonFile(path, Schema.Unknown).pipe(Effect.mapError((error) => unreadable(path, error)))
})

/**
 * Reads a JSON group description from a file (with `FileSystem`), decoded with
 * {@link GroupDocument} in one step; an invalid group lists every problem as {@link decodeGroup}
 * does, the file prefixing each.
 */
export const loadGroupFile = Effect.fn("Group.loadGroupFile")(function* (path: string) {
  return buildGroup(yield* readJsonFile(path, GroupDocument).pipe(Effect.mapError((error) => unreadable(path, error))))
})
