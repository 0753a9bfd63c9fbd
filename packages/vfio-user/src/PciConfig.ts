import { Schema } from "effect"

/**
 * Who a served PCI function says it is, in its config-space header. Clients that bind by ids
 * (a VMM's vfio-user PCI device, a guest driver) read these before anything else.
 */
export interface PciIdentity {
  readonly vendorId: number
  readonly deviceId: number
  /** Base class, subclass and programming interface, as one 24-bit number (default 0xff0000: no class fits). */
  readonly classCode?: number
  readonly revisionId?: number
  readonly subsystemVendorId?: number
  readonly subsystemId?: number
}

const U16 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xffff }))
const U8 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xff }))
const U24 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xff_ffff }))

/** A {@link PciIdentity} as it appears in a device file: `{"vendorId": 4318, "deviceId": 8752}`. */
export const PciIdentity = Schema.Struct({
  vendorId: U16,
  deviceId: U16,
  classCode: Schema.optionalKey(U24),
  revisionId: Schema.optionalKey(U8),
  subsystemVendorId: Schema.optionalKey(U16),
  subsystemId: Schema.optionalKey(U16)
})

const isPciIdentity = Schema.is(PciIdentity)

/** Size of a conventional PCI config space. */
export const PciConfigSize = 256

/** Offsets of the type-0 header fields (PCI Local Bus Specification, configuration header). */
const Offset = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  REVISION_ID: 0x08,
  CLASS_CODE: 0x09,
  HEADER_TYPE: 0x0e,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e
} as const

/** Class code 0xff: "device does not fit in any defined class". */
const UnclassifiedClass = 0xff_0000

/**
 * A 256-byte config space holding a type-0 header with `identity`'s ids; everything else is
 * zero: command register clear (no I/O, memory or bus mastering enabled), status without a
 * capability list, no BARs, no interrupt pin. It is what a function with no resources shows.
 */
export const pciConfigSpace = (identity: PciIdentity): Uint8Array => {
  if (!isPciIdentity(identity)) throw new RangeError(`not a PCI identity: ${JSON.stringify(identity)}`)
  const config = new Uint8Array(PciConfigSize)
  const view = new DataView(config.buffer)
  view.setUint16(Offset.VENDOR_ID, identity.vendorId, true)
  view.setUint16(Offset.DEVICE_ID, identity.deviceId, true)
  view.setUint8(Offset.REVISION_ID, identity.revisionId ?? 0)
  const classCode = identity.classCode ?? UnclassifiedClass
  // Three bytes, low first: programming interface, subclass, base class.
  view.setUint8(Offset.CLASS_CODE, classCode & 0xff)
  view.setUint8(Offset.CLASS_CODE + 1, (classCode >> 8) & 0xff)
  view.setUint8(Offset.CLASS_CODE + 2, (classCode >> 16) & 0xff)
  view.setUint8(Offset.HEADER_TYPE, 0)
  view.setUint16(Offset.SUBSYSTEM_VENDOR_ID, identity.subsystemVendorId ?? 0, true)
  view.setUint16(Offset.SUBSYSTEM_ID, identity.subsystemId ?? 0, true)
  return config
}
