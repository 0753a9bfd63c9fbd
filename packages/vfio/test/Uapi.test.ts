import { Uapi } from "@lockstep/vfio"
import { describe, expect, it } from "vitest"

/*
 * Expected values are written from include/uapi/linux/vfio.h and include/uapi/linux/iommufd.h
 * by hand: the _IO() numbers from `_IO(VFIO_TYPE, VFIO_BASE + n)` with VFIO_TYPE ';' (0x3b)
 * and VFIO_BASE 100, and every offset from the structures' fields in order (__u32 and __s32
 * 4 bytes, __aligned_u64 8 bytes aligned to 8).
 */

describe("ioctl numbers", () => {
  it("are _IO(';', n): no direction or size bits", () => {
    expect(Uapi.Ioctl).toEqual({
      DEVICE_GET_INFO: 0x3b6b, // VFIO_BASE + 7
      DEVICE_GET_REGION_INFO: 0x3b6c, // + 8
      DEVICE_RESET: 0x3b6f, // + 11
      DEVICE_FEATURE: 0x3b75, // + 17
      DEVICE_BIND_IOMMUFD: 0x3b76, // + 18
      DEVICE_ATTACH_IOMMUFD_PT: 0x3b77, // + 19
      MIG_GET_PRECOPY_INFO: 0x3b79, // + 21
      IOMMU_IOAS_ALLOC: 0x3b81 // IOMMUFD_CMD_IOAS_ALLOC = 0x81
    })
  })

  it("feature indices and operation bits are the header's", () => {
    expect(Uapi.Feature).toEqual({
      MIGRATION: 1,
      MIG_DEVICE_STATE: 2,
      DMA_LOGGING_START: 6,
      DMA_LOGGING_STOP: 7,
      DMA_LOGGING_REPORT: 8,
      MIG_DATA_SIZE: 9,
      MIG_PRECOPY_INFO_V2: 12
    })
    // VFIO_DEVICE_FEATURE_MASK (GENMASK(15, 0)), then _GET (1 << 16), _SET (1 << 17), _PROBE (1 << 18).
    expect(Uapi.FeatureOp).toEqual({ MASK: 0xffff, GET: 0x10000, SET: 0x20000, PROBE: 0x40000 })
  })
})

const offsets = (layout: Uapi.Layout<string>) =>
  Object.fromEntries(Object.entries(layout.fields).map(([name, f]) => [name, f.offset]))

describe("structure layouts", () => {
  const cases: ReadonlyArray<readonly [Uapi.Layout<string>, number, Record<string, number>]> = [
    [Uapi.DeviceInfo, 24, { argsz: 0, flags: 4, num_regions: 8, num_irqs: 12, cap_offset: 16, pad: 20 }],
    [Uapi.RegionInfo, 32, { argsz: 0, flags: 4, index: 8, cap_offset: 12, size: 16, offset: 24 }],
    [Uapi.DeviceFeature, 8, { argsz: 0, flags: 4 }],
    [Uapi.FeatureMigration, 8, { flags: 0 }],
    [Uapi.FeatureMigState, 8, { device_state: 0, data_fd: 4 }],
    [Uapi.FeatureMigDataSize, 8, { stop_copy_length: 0 }],
    [Uapi.BindIommufd, 24, { argsz: 0, flags: 4, iommufd: 8, out_devid: 12, token_uuid_ptr: 16 }],
    [Uapi.AttachIommufdPt, 16, { argsz: 0, flags: 4, pt_id: 8, pasid: 12 }],
    [Uapi.PrecopyInfo, 24, { argsz: 0, flags: 4, initial_bytes: 8, dirty_bytes: 16 }],
    [Uapi.IoasAlloc, 12, { size: 0, flags: 4, out_ioas_id: 8 }]
  ]
  for (const [layout, size, fields] of cases)
    it(`struct ${layout.name}: sizeof ${size}`, () => {
      expect(layout.size).toBe(size)
      expect(offsets(layout)).toEqual(fields)
    })

  it("encodes little-endian at the offsets, and reads back what it wrote", () => {
    const buf = new Uint8Array(Uapi.RegionInfo.size)
    Uapi.encode(Uapi.RegionInfo, buf, { argsz: 32, index: 1, size: 8n, offset: 0x10000000000n })
    expect([...buf.subarray(0, 4)]).toEqual([32, 0, 0, 0])
    expect([...buf.subarray(8, 12)]).toEqual([1, 0, 0, 0])
    expect([...buf.subarray(16, 24)]).toEqual([8, 0, 0, 0, 0, 0, 0, 0])
    expect([...buf.subarray(24, 32)]).toEqual([0, 0, 0, 0, 0, 1, 0, 0])
    expect(Uapi.u64(Uapi.RegionInfo, buf, "offset")).toBe(0x10000000000n)
    const state = new Uint8Array(8)
    Uapi.encode(Uapi.FeatureMigState, state, { device_state: 6, data_fd: -1 })
    expect([...state]).toEqual([6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
    expect(Uapi.field(Uapi.FeatureMigState, state, "data_fd")).toBe(-1)
  })

  it("a feature argument is the header with argsz covering its data", () => {
    const buf = Uapi.featureBuffer(Uapi.Feature.MIG_DEVICE_STATE, Uapi.FeatureOp.SET, Uapi.FeatureMigState, {
      device_state: 3,
      data_fd: -1
    })
    expect(buf.length).toBe(16)
    // argsz 16; flags = 2 | (1 << 17) = 0x00020002; device_state 3; data_fd -1
    expect([...buf]).toEqual([16, 0, 0, 0, 2, 0, 2, 0, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
  })
})
