/**
 * Coordination of a group of VFIO devices that DMA into each other: the group description and
 * its P2P topology, the migratability rule, and the planner that turns the devices' kernel paths
 * into a dependency graph that never lets an initiator write into a halted device.
 *
 * @packageDocumentation
 */

export { type ArcEvent, type GraphNode, type GraphOutcome, type RunOptions, runGraph } from "./ArcRunner.js"
export {
  type ErrorPolicy,
  executePlanned,
  type GroupRuntime,
  graphOf,
  rollbackTarget,
  type TransitionEvent,
  type TransitionOptions,
  type TransitionReport,
  transition
} from "./Executor.js"
export {
  ArcTimedOut,
  type ExecutorError,
  FailureCause,
  FinalStates,
  StateUnreadable,
  TransitionFailed,
  TransitionInterrupted,
  TransitionRefused
} from "./ExecutorError.js"
export {
  decodeGroup,
  describeIssue,
  type Group,
  type GroupDevice,
  GroupDocument,
  type GroupError,
  GroupFileNotJson,
  GroupFileUnreadable,
  type GroupProblem,
  InvalidGroup,
  loadGroupFile,
  type TopologySpec
} from "./Group.js"
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
export {
  CycleArc,
  DependencyCycle,
  DeviceNotInGroup,
  PathRefused,
  PlanError,
  PlanErrorReason,
  UnsafeEdge
} from "./PlanError.js"
export {
  beginPrecopyPlan,
  enterStopCopyPlan,
  type PlanRequest,
  planTransition,
  prepareResumePlan,
  quiescePlan,
  resumePlan,
  type StateAssignment,
  stopPlan
} from "./Planner.js"
export {
  fromPromiseDevice,
  LockstepGroup,
  type LockstepGroupOptions,
  type PromiseDevice
} from "./PromiseApi.js"
export {
  beginPrecopy,
  enterStopCopy,
  type GroupStep,
  prepareResume,
  quiesce,
  resume,
  stop
} from "./Steps.js"
export type { Edge, P2PDomain, Topology } from "./Topology.js"
export {
  BadDependency,
  BrokenPath,
  maxViolations,
  Overlap,
  type PlanViolation,
  type Span,
  UnsafePlan,
  verifyPlan
} from "./Verification.js"
