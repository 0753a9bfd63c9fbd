/**
 * The reference model: what Lockstep must do, written from DESIGN.md and the kernel uAPI alone.
 * It shares no code with the packages (only type names), so it can judge them: the fuzz oracle,
 * the model-based runs, the exhaustive checker and the fabric's edge list in tests all ask it.
 */
export {
  type DowntimeFloor,
  downtimeFloor,
  drainLink,
  earliestTransition,
  type FloorDevice,
  type FloorScenario,
  serialDowntimeMs
} from "./DowntimeFloor.js"
export {
  blockersOf,
  type EdgeList,
  edgesOf,
  type ModelDevice,
  type ModelEdge,
  type ModelGroup,
  type ModelTopology,
  modelGroup,
  validEdgesOf
} from "./Edges.js"
export {
  type Assignment,
  type Impossible,
  judgeTransition,
  stateIn,
  type Verdict
} from "./GroupTransition.js"
export {
  allStates,
  directArcs,
  flagBits,
  hasResumeSession,
  hasSavingSession,
  type KernelPath,
  kernelPath,
  type ModelArc,
  nextStep,
  type PeerClass,
  peerClass,
  requestableStates,
  supports
} from "./Kernel.js"
export { expectedAfterMigration, type Owner } from "./Migration.js"
export { type ArcGraph, checkPlanOrders, type OrdersChecked } from "./PlanOrders.js"
export { expectedAfterFailure, type Policy, quarantinedBy, wayBack } from "./Rollback.js"
