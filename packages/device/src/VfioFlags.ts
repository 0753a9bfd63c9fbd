/**
 * The flag words of `include/uapi/linux/vfio.h` that both VFIO backends carry: the kernel
 * ioctls read them from `struct vfio_device_info`, `struct vfio_region_info` and
 * `struct vfio_device_feature`, and vfio-user reuses those structures unchanged in
 * DEVICE_GET_INFO, DEVICE_GET_REGION_INFO and DEVICE_FEATURE.
 */

/** `VFIO_DEVICE_FLAGS_*` of `vfio_device_info.flags`. */
export const DeviceInfoFlag = {
  RESET: 1 << 0,
  PCI: 1 << 1,
  PLATFORM: 1 << 2,
  AMBA: 1 << 3,
  CCW: 1 << 4,
  AP: 1 << 5,
  FSL_MC: 1 << 6,
  CAPS: 1 << 7,
  CDX: 1 << 8
} as const

/** `VFIO_REGION_INFO_FLAG_*` of `vfio_region_info.flags`. */
export const RegionInfoFlag = { READ: 1 << 0, WRITE: 1 << 1, MMAP: 1 << 2, CAPS: 1 << 3 } as const

/** `VFIO_DEVICE_FEATURE_*` feature numbers (the low 16 bits of `vfio_device_feature.flags`). */
export const Feature = {
  MIGRATION: 1,
  MIG_DEVICE_STATE: 2,
  DMA_LOGGING_START: 6,
  DMA_LOGGING_STOP: 7,
  DMA_LOGGING_REPORT: 8,
  MIG_DATA_SIZE: 9,
  /** Opt-in (SET, no data) to `vfio_precopy_info.flags` as an output (`VFIO_PRECOPY_INFO_REINIT`); newer kernels only. */
  MIG_PRECOPY_INFO_V2: 12
} as const

/** `VFIO_DEVICE_FEATURE_MASK` (the feature number) and the operation bits `_GET`, `_SET`, `_PROBE` above it. */
export const FeatureOp = { MASK: 0xffff, GET: 1 << 16, SET: 1 << 17, PROBE: 1 << 18 } as const
