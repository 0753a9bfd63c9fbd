/**
 * Coordination of a group of VFIO devices that DMA into each other: the planner that turns the
 * devices' kernel paths into a dependency graph that never lets an initiator write into a halted
 * device, the executor that runs it with rollback, and the plan's verification. The group model
 * (description, topology, migratability, plan form) is `@lockstep/group`, re-exported here.
 *
 * @packageDocumentation
 */

export {
  type Barrier,
  type BarrierKind,
  decodeGroup,
  describeIssue,
  deviceEntry,
  type Edge,
  emptyDeviceRecord,
  expandAfter,
  formatPlan,
  type Group,
  type GroupDevice,
  GroupDocument,
  GroupError,
  GroupErrorReason,
  GroupFileNotJson,
  GroupFileUnreadable,
  GroupProblem,
  GroupRuntime,
  InvalidGroup,
  JsonFileError,
  type JsonFileErrorReason,
  JsonFileInvalid,
  type JsonFileOptions,
  loadGroupFile,
  Migratability,
  type P2PDomain,
  type Plan,
  type PlanArc,
  type PlanJson,
  type PlanNode,
  planJson,
  putDevice,
  readGroupFile,
  readJsonFile,
  readTextFile,
  reportedStates,
  type Topology,
  TopologyDocument,
  type TopologySpec
} from "@lockstep/group"
export { type ArcEvent, type GraphNode, type GraphOutcome, type RunOptions, runGraph } from "./ArcRunner.js"
export {
  type ErrorPolicy,
  executePlanned,
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
