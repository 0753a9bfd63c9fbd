/**
 * The kernel's VFIO and iommufd uAPI as this package uses it: ioctl numbers and the byte
 * layouts of their structures, from `include/uapi/linux/vfio.h` and
 * `include/uapi/linux/iommufd.h` (x86-64 and every other 64-bit little-endian Linux ABI:
 * `__u32` 4-aligned, `__aligned_u64` 8-aligned, structures padded to their alignment).
 */

export { DeviceInfoFlag, Feature, FeatureOp, RegionInfoFlag } from "@lockstep/device"

/** `_IO(type, nr)` of `<asm-generic/ioctl.h>`: no direction and no size bits, `(type << 8) | nr`. */
const io = (type: number, nr: number): number => (type << 8) | nr

/** `VFIO_TYPE` (`';'`) and `VFIO_BASE`. */
const VfioType = 0x3b
const VfioBase = 100
/** `IOMMUFD_TYPE` (`';'`) and `IOMMUFD_CMD_IOAS_ALLOC`. */
const IommufdType = 0x3b
const IommufdCmdIoasAlloc = 0x81

/** The ioctl request numbers used here. */
export const Ioctl = {
  /** `VFIO_DEVICE_GET_INFO` on the device fd: `struct vfio_device_info`. */
  DEVICE_GET_INFO: io(VfioType, VfioBase + 7),
  /** `VFIO_DEVICE_GET_REGION_INFO` on the device fd: `struct vfio_region_info`. */
  DEVICE_GET_REGION_INFO: io(VfioType, VfioBase + 8),
  /** `VFIO_DEVICE_RESET` on the device fd: no argument. */
  DEVICE_RESET: io(VfioType, VfioBase + 11),
  /** `VFIO_DEVICE_FEATURE` on the device fd: `struct vfio_device_feature` + feature data. */
  DEVICE_FEATURE: io(VfioType, VfioBase + 17),
  /** `VFIO_DEVICE_BIND_IOMMUFD` on the device cdev fd: `struct vfio_device_bind_iommufd`. */
  DEVICE_BIND_IOMMUFD: io(VfioType, VfioBase + 18),
  /** `VFIO_DEVICE_ATTACH_IOMMUFD_PT` on the device cdev fd: `struct vfio_device_attach_iommufd_pt`. */
  DEVICE_ATTACH_IOMMUFD_PT: io(VfioType, VfioBase + 19),
  /** `VFIO_MIG_GET_PRECOPY_INFO` on a saving data_fd: `struct vfio_precopy_info`. */
  MIG_GET_PRECOPY_INFO: io(VfioType, VfioBase + 21),
  /** `IOMMU_IOAS_ALLOC` on /dev/iommu: `struct iommu_ioas_alloc`. */
  IOMMU_IOAS_ALLOC: io(IommufdType, IommufdCmdIoasAlloc)
} as const

/** The ioctl names, for messages. */
export type IoctlName = keyof typeof Ioctl

/** `VFIO_PRECOPY_INFO_REINIT`: new initial data is on the stream (only after the v2 opt-in). */
export const PrecopyInfoReinit = 1 << 0

/** The width of a field: `__u32`, `__s32` or `__aligned_u64`. */
export type FieldType = "u32" | "s32" | "u64"

/** One field of a structure: where it is and how wide. */
export interface Field {
  readonly offset: number
  readonly type: FieldType
}

/** A structure's layout: its size (`sizeof`) and its fields by their header names. */
export interface Layout<F extends string> {
  readonly name: string
  readonly size: number
  readonly fields: Readonly<Record<F, Field>>
}

const widths: Readonly<Record<FieldType, number>> = { u32: 4, s32: 4, u64: 8 }

/**
 * Lays out a C structure from its fields in declaration order: each field at the next offset
 * aligned to its own width, the size rounded up to the widest field (the C rule on every
 * 64-bit Linux ABI for these types).
 */
const struct = <F extends string>(name: string, fields: ReadonlyArray<readonly [F, FieldType]>): Layout<F> => {
  let offset = 0
  let align = 1
  const out: Partial<Record<F, Field>> = {}
  for (const [field, type] of fields) {
    const width = widths[type]
    offset = Math.ceil(offset / width) * width
    out[field] = { offset, type }
    offset += width
    align = Math.max(align, width)
  }
  return { name, size: Math.ceil(offset / align) * align, fields: out as Record<F, Field> }
}

/** `struct vfio_device_info`. */
export const DeviceInfo = struct("vfio_device_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["num_regions", "u32"],
  ["num_irqs", "u32"],
  ["cap_offset", "u32"],
  ["pad", "u32"]
])

/** `struct vfio_region_info`. */
export const RegionInfo = struct("vfio_region_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["index", "u32"],
  ["cap_offset", "u32"],
  ["size", "u64"],
  ["offset", "u64"]
])

/** `struct vfio_device_feature` (its flexible `data[]` follows at `size`). */
export const DeviceFeature = struct("vfio_device_feature", [
  ["argsz", "u32"],
  ["flags", "u32"]
])

/** `struct vfio_device_feature_migration`. */
export const FeatureMigration = struct("vfio_device_feature_migration", [["flags", "u64"]])

/** `struct vfio_device_feature_mig_state`. */
export const FeatureMigState = struct("vfio_device_feature_mig_state", [
  ["device_state", "u32"],
  ["data_fd", "s32"]
])

/** `struct vfio_device_feature_mig_data_size`. */
export const FeatureMigDataSize = struct("vfio_device_feature_mig_data_size", [["stop_copy_length", "u64"]])

/** `struct vfio_device_bind_iommufd`. */
export const BindIommufd = struct("vfio_device_bind_iommufd", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["iommufd", "s32"],
  ["out_devid", "u32"],
  ["token_uuid_ptr", "u64"]
])

/** `struct vfio_device_attach_iommufd_pt`. */
export const AttachIommufdPt = struct("vfio_device_attach_iommufd_pt", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["pt_id", "u32"],
  ["pasid", "u32"]
])

/** `struct vfio_precopy_info`. */
export const PrecopyInfo = struct("vfio_precopy_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["initial_bytes", "u64"],
  ["dirty_bytes", "u64"]
])

/** `struct iommu_ioas_alloc`. */
export const IoasAlloc = struct("iommu_ioas_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["out_ioas_id", "u32"]
])

/** A field's value: `number` for 32-bit fields, `bigint` for 64-bit ones. */
export type FieldValue<T extends FieldType> = T extends "u64" ? bigint : number

/** Writes `values` into `buf` at `base` (the structure's start) by the layout; other bytes are left as they are. */
export const encode = <F extends string>(
  layout: Layout<F>,
  buf: Uint8Array,
  values: Partial<Record<F, number | bigint>>,
  base = 0
): void => {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  for (const [name, value] of Object.entries(values) as Array<[F, number | bigint | undefined]>) {
    if (value === undefined) continue
    const { offset, type } = layout.fields[name]
    if (type === "u64") view.setBigUint64(base + offset, BigInt(value), true)
    else if (type === "s32") view.setInt32(base + offset, Number(value), true)
    else view.setUint32(base + offset, Number(value), true)
  }
}

/** Reads one field of a structure at `base` in `buf`. */
export const field = <F extends string, N extends F>(
  layout: Layout<F>,
  buf: Uint8Array,
  name: N,
  base = 0
): number | bigint => {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength)
  const { offset, type } = layout.fields[name]
  if (type === "u64") return view.getBigUint64(base + offset, true)
  if (type === "s32") return view.getInt32(base + offset, true)
  return view.getUint32(base + offset, true)
}

/** A 32-bit field as a number. */
export const u32 = <F extends string>(layout: Layout<F>, buf: Uint8Array, name: F, base = 0): number =>
  Number(field(layout, buf, name, base))

/** A 64-bit field as a bigint. */
export const u64 = <F extends string>(layout: Layout<F>, buf: Uint8Array, name: F, base = 0): bigint =>
  BigInt(field(layout, buf, name, base))

/**
 * A `VFIO_DEVICE_FEATURE` argument: the header with `argsz` covering the feature data, the
 * feature index and operation in `flags`, and room for `data` after it.
 */
export const featureBuffer = <F extends string>(
  feature: number,
  op: number,
  data: Layout<F> | undefined,
  values: Partial<Record<F, number | bigint>> = {}
): Uint8Array => {
  const size = DeviceFeature.size + (data?.size ?? 0)
  const buf = new Uint8Array(size)
  encode(DeviceFeature, buf, { argsz: size, flags: feature | op })
  if (data !== undefined) encode(data, buf, values, DeviceFeature.size)
  return buf
}
