/**
 * Deterministic simulated devices and the P2P DMA fabric between them, on virtual time:
 * the ground truth that coordinators, migration sessions, fuzzers and benchmarks are
 * checked against.
 *
 * @packageDocumentation
 */
export { type Fabric, type FabricOptions, makeFabric } from "./Fabric.js"
export {
  type ArcFailureOutcome,
  type CorruptData,
  type FailArc,
  type FailRead,
  type FailWrite,
  Fault,
  type FaultEncoded,
  FaultPlan,
  type FaultTimes,
  type HangArc,
  type LandOnInterrupt,
  type TruncateData
} from "./FaultPlan.js"
export {
  type CorruptingWrite,
  describeCorruptingWrite,
  describeViolation,
  InvariantViolated,
  type InvariantViolation,
  type P2PEdge,
  type ViolationCause
} from "./Invariant.js"
export type { MemoryComparison } from "./Memory.js"
export { type ObservedDevice, observeDevice } from "./ObservedDevice.js"
export { compareMemory, makeSimDevice, memoryDigest, type SimDevice } from "./SimDevice.js"
export {
  type ArcKey,
  arcKey,
  arcLatency,
  defaultSimDeviceConfig,
  precopyWithinState,
  type ResolvedSimDeviceConfig,
  resolveSimDeviceConfig,
  SimDeviceConfig,
  type SimDeviceConfigEncoded,
  SimDeviceConfigFields
} from "./SimDeviceConfig.js"
export { InvalidFabric, InvalidSimConfig } from "./SimError.js"
export type { DeviceStatus, SimEvent, SimObserver } from "./SimEvent.js"
export { SimulatedGroup, type SimulateOptions, simulateGroup } from "./SimulatedGroup.js"
export { SimulationClock } from "./SimulationClock.js"
export { runOnVirtualTime } from "./VirtualTime.js"
