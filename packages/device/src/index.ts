/**
 * The `Device` port: what the coordinator needs from any migratable device backend.
 *
 * @packageDocumentation
 */
export {
  arcOf,
  type Device,
  type DeviceKind,
  DeviceKinds,
  kindMayDoP2P,
  type PrecopyInfo,
  type ReadResult,
  stopArcOfQuiesce
} from "./Device.js"
export {
  ArcFailed,
  ArcRejected,
  ArcSchema,
  DeviceError,
  DeviceErrorReason,
  DeviceUnreachable,
  type ErrorCode,
  ResetFailed,
  SessionFailed,
  SessionOperation
} from "./DeviceError.js"
export { DeviceInfoFlag, Feature, FeatureOp, RegionInfoFlag } from "./VfioFlags.js"
