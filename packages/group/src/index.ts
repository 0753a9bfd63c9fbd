/**
 * The group model: what a group of VFIO devices that DMA into each other is, below everything
 * that acts on it. The group description document and its rules, the P2P topology (domains
 * and edges), the migratability rule, a group with its live devices, and the plan form of a
 * group transition (arcs and barriers) that the coordinator builds and the timeline draws.
 *
 * @packageDocumentation
 */

export { deviceEntry, deviceRecord, emptyDeviceRecord, putDevice } from "./DeviceRecord.js"
export { decodeGroup, type Group, type GroupDevice, loadGroupFile, readGroupFile, type TopologySpec } from "./Group.js"
export { GroupDocument, TopologyDocument } from "./GroupDocument.js"
export { GroupError, GroupErrorReason, GroupFileNotJson, GroupFileUnreadable, InvalidGroup } from "./GroupError.js"
export { describeIssue, GroupProblem } from "./GroupProblem.js"
export { GroupRuntime, reportedStates } from "./GroupRuntime.js"
export {
  JsonFileError,
  JsonFileErrorReason,
  JsonFileInvalid,
  JsonFileNotJson,
  type JsonFileOptions,
  JsonFileUnreadable,
  readJsonFile,
  readTextFile
} from "./JsonFile.js"
export * as Migratability from "./Migratability.js"
export {
  type Barrier,
  type BarrierKind,
  expandAfter,
  formatPlan,
  type Plan,
  type PlanArc,
  type PlanJson,
  type PlanNode,
  planJson
} from "./Plan.js"
export { type Edge, type P2PDomain, Topology } from "./Topology.js"
