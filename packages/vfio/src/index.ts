/**
 * Devices bound to kernel VFIO drivers, driven through the VFIO device cdev and iommufd: the
 * `Device` port over `VFIO_DEVICE_FEATURE` MIG_DEVICE_STATE (one legal arc at a time), data_fd
 * sessions, pre-copy info, MIG_DATA_SIZE, reset and region access, with the uAPI structures
 * laid out in TypeScript and seven libc calls as the only native code.
 *
 * @packageDocumentation
 */
export {
  type KernelDeviceInfo,
  type KernelPrecopyInfo,
  type KernelRegionInfo,
  openVfioDevice,
  type VfioDevice,
  type VfioOptions,
  type VfioPath
} from "./KernelDevice.js"
export { type Native, nativeAccess, OpenReadWrite } from "./Native.js"
export { cdevDirectory, type DeviceLocation, holdersOf, locate } from "./Sysfs.js"
export * as Uapi from "./Uapi.js"
export {
  DeviceNotReady,
  Holder,
  OpenProblem,
  RegionAccessFailed,
  VfioError,
  VfioErrorReason,
  VfioOpenFailed
} from "./VfioError.js"
export {
  type AttachedVfioGroup,
  attachVfioDevices,
  hasVfioDevice,
  namesVfioDevice,
  type OpenVfioGroupOptions,
  openVfioGroup,
  p2pQuiesceIsStopOf,
  VfioDeviceInvalid,
  VfioGroup,
  vfioPathOf
} from "./VfioGroup.js"
