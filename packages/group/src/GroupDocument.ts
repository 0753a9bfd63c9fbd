import { DeviceKinds } from "@lockstep/device"
import { FlagsSchema, hasFlag } from "@lockstep/fsm"
import { Schema } from "effect"
import { groupRules, type RulesView } from "./GroupRules.js"

const DeviceDocument = Schema.StructWithRest(
  Schema.Struct({ id: Schema.String, kind: Schema.Literals(DeviceKinds), flags: FlagsSchema }),
  [Schema.Record(Schema.String, Schema.Unknown)]
)

const EdgeDocument = Schema.Tuple([Schema.String, Schema.String]).annotate({
  expected: "a pair [initiator, target] of device ids"
})

/**
 * The `topology` of a group document: `"shared-iommu"`, `"none"`, or explicit `edges` and P2P
 * `domains` of device ids (their rules are the group's, checked with the devices).
 */
export const TopologyDocument = Schema.Union([
  Schema.Literals(["shared-iommu", "none"]),
  Schema.Struct({
    edges: Schema.optionalKey(Schema.Array(EdgeDocument)),
    domains: Schema.optionalKey(Schema.Array(Schema.Array(Schema.String)))
  })
]).annotate({
  expected: `"shared-iommu", "none" or { "edges": [[initiator, target], …], "domains": [[id, …], …] }`
})

const GroupShape = Schema.Struct({
  devices: Schema.Array(DeviceDocument),
  topology: Schema.optionalKey(TopologyDocument)
})

const viewOfDocument = (doc: typeof GroupShape.Type): RulesView => ({
  devices: doc.devices.map((d) => ({ id: d.id, kind: d.kind, stopCopy: hasFlag(d.flags, "STOP_COPY") })),
  edges: typeof doc.topology === "object" ? (doc.topology.edges ?? []) : [],
  domains: typeof doc.topology === "object" ? (doc.topology.domains ?? []) : []
})

/**
 * The schema of a group description document. Decoding checks the shape (kinds, flag names)
 * and then the group rules: unique ids, STOP_COPY on every device, edges and domains only
 * between known `pci` devices, no self edges, disjoint domains.
 */
export const GroupDocument = GroupShape.check(Schema.makeFilter((doc) => groupRules(viewOfDocument(doc))))

/** The type `GroupDocument` decodes to. */
export type GroupDocument = typeof GroupDocument.Type
