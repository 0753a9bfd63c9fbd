import type { Device } from "@lockstep/device"
import { FlagNames, type Flags, flagNames, flagsOf, type State } from "@lockstep/fsm"
import { decodeGroup, type GroupError, GroupRuntime } from "@lockstep/group"
import { Context, Data, Effect, Layer, type Scope } from "effect"
import { openVfioDevice, type VfioDevice, type VfioPath } from "./KernelDevice.js"
import type { VfioError } from "./VfioError.js"

/** A group file's kernel device could not be attached: the JSON path and why. */
export class VfioDeviceInvalid extends Data.TaggedError("VfioDeviceInvalid")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

/** A group document whose kernel devices are open and whose flags come from the kernel. */
export interface AttachedVfioGroup {
  /** The document with every kernel device's `flags` (and `kind`, if it had none) filled in. */
  readonly document: unknown
  /** The open devices, by id. They stay open until the scope closes. */
  readonly devices: ReadonlyMap<string, VfioDevice>
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

/** Whether a device document names a kernel device (`"vfio": {…}`). */
export const namesVfioDevice = (device: unknown): boolean => isRecord(device) && device.vfio !== undefined

/** Whether a group document has a kernel device. */
export const hasVfioDevice = (document: unknown): boolean =>
  isRecord(document) && Array.isArray(document.devices) && document.devices.some(namesVfioDevice)

/**
 * Reads a device's `"vfio"` key: `{"sysfsdev": PATH}` (QEMU's convention: the device's sysfs
 * directory) or `{"cdev": "/dev/vfio/devices/vfioN"}`, exactly one of them, and optionally
 * `"p2pQuiesceIsStop": true` (see {@link p2pQuiesceIsStopOf}).
 */
export const vfioPathOf = (spec: unknown): VfioPath | string => {
  const expected =
    'expected {"sysfsdev": "/sys/bus/…/DEVICE"} or {"cdev": "/dev/vfio/devices/vfioN"} (and optionally "p2pQuiesceIsStop": true)'
  if (!isRecord(spec)) return expected
  const keys = Object.keys(spec).filter((k) => k !== "p2pQuiesceIsStop")
  const unknown = keys.filter((k) => k !== "sysfsdev" && k !== "cdev")
  if (unknown.length > 0) return `unknown key ${unknown.map((k) => JSON.stringify(k)).join(", ")}: ${expected}`
  if (keys.length !== 1) return `give exactly one of "sysfsdev" and "cdev": ${expected}`
  const value = spec.sysfsdev ?? spec.cdev
  if (typeof value !== "string" || value.length === 0) return expected
  return typeof spec.sysfsdev === "string" ? { sysfsdev: value } : { cdev: value }
}

/**
 * A device's `"vfio": {"p2pQuiesceIsStop": true}`: its driver implements RUNNING_P2P by stopping
 * the device (Intel's xe cannot block only outgoing P2P), which the kernel does not report, so
 * its user declares it. Default false; anything but a boolean is a reason to refuse.
 */
export const p2pQuiesceIsStopOf = (spec: unknown): boolean | string => {
  const value = isRecord(spec) ? spec.p2pQuiesceIsStop : undefined
  if (value === undefined) return false
  return typeof value === "boolean" ? value : `"p2pQuiesceIsStop" must be true or false, not ${JSON.stringify(value)}`
}

const declaredFlags = (u: unknown): Flags | undefined | "invalid" => {
  if (u === undefined) return undefined
  if (!Array.isArray(u)) return "invalid"
  const names = u.filter((f): f is (typeof FlagNames)[number] => (FlagNames as ReadonlyArray<unknown>).includes(f))
  return names.length === u.length ? flagsOf(names) : "invalid"
}

/**
 * Opens every device of a raw group document that says `"vfio": {"sysfsdev": …}` or
 * `{"cdev": …}` and fills its `flags` from the kernel (`VFIO_DEVICE_FEATURE` MIGRATION). A
 * device that also declares `flags` must declare exactly the kernel's set: a disagreement is
 * invalid input. With `startStates`, every kernel device must be in one of them, checked after
 * all are open and before anything moves. A device that cannot be opened fails with
 * `VfioError` (`VfioOpenFailed`, naming it and why: held by another process, no VFIO here, …). Other devices are left as they are; decode the
 * result with `decodeGroup` afterwards.
 */
export const attachVfioDevices = Effect.fn("Vfio.attachGroup")(function* (
  document: unknown,
  options: { readonly startStates?: ReadonlyArray<State> } = {}
): Effect.fn.Return<AttachedVfioGroup, VfioDeviceInvalid | VfioError, Scope.Scope> {
  if (!isRecord(document) || !Array.isArray(document.devices)) return { document, devices: new Map() }
  const devices = new Map<string, VfioDevice>()
  const out: Array<unknown> = []
  for (const [i, raw] of document.devices.entries()) {
    if (!isRecord(raw) || raw.vfio === undefined) {
      out.push(raw)
      continue
    }
    const at = `devices[${i}].vfio`
    const named = vfioPathOf(raw.vfio)
    if (typeof named === "string") return yield* new VfioDeviceInvalid({ path: at, reason: named })
    const fullStop = p2pQuiesceIsStopOf(raw.vfio)
    if (typeof fullStop === "string")
      return yield* new VfioDeviceInvalid({ path: `${at}.p2pQuiesceIsStop`, reason: fullStop })
    const path = "sysfsdev" in named ? named.sysfsdev : named.cdev
    const id = typeof raw.id === "string" ? raw.id : path
    const kind =
      raw.kind === "pci" || raw.kind === "mdev" || raw.kind === "ccw" || raw.kind === "ap" ? raw.kind : undefined
    const device = yield* openVfioDevice({
      ...named,
      id,
      ...(kind === undefined ? {} : { kind }),
      ...(fullStop ? { p2pQuiesceIsStop: true } : {})
    })
    if (device.info.migrationError !== undefined)
      return yield* new VfioDeviceInvalid({ path: at, reason: `${id}: ${device.info.migrationError}` })
    const declared = declaredFlags(raw.flags)
    if (declared === "invalid")
      return yield* new VfioDeviceInvalid({
        path: `devices[${i}].flags`,
        reason: `expected a list of ${FlagNames.join(", ")}`
      })
    if (declared !== undefined && declared !== device.flags)
      return yield* new VfioDeviceInvalid({
        path: `devices[${i}].flags`,
        reason: `declares ${flagNames(declared).join(",") || "no flags"} but the kernel reports ${flagNames(device.flags).join(",") || "no flags"} for ${path}; remove "flags" or make it agree`
      })
    devices.set(id, device)
    out.push({ ...raw, kind: raw.kind ?? device.kind, flags: flagNames(device.flags) })
  }
  const expected = options.startStates
  if (expected !== undefined)
    for (const device of devices.values())
      yield* device
        .requireState(expected)
        .pipe(
          Effect.catchTag("DeviceError", (e) =>
            Effect.fail(new VfioDeviceInvalid({ path: `devices.${device.id}`, reason: e.message }))
          )
        )
  return { document: { ...document, devices: out }, devices }
})

/** A group every device of which is a kernel VFIO device, open: what the coordinator drives. */
export interface VfioGroup extends GroupRuntime {
  readonly devices: ReadonlyMap<string, VfioDevice>
}

/** Options of {@link openVfioGroup}: every device must start in one of `startStates`, if given. */
export interface OpenVfioGroupOptions {
  readonly startStates?: ReadonlyArray<State>
}

/**
 * Opens every device of a group document (each `"vfio": {…}`, see {@link attachVfioDevices}) and
 * decodes the group, flags from the kernel. Every device must be a kernel one: to mix backends,
 * attach with `attachVfioDevices` and build the `GroupRuntime` yourself. The devices close with
 * the scope.
 */
export const openVfioGroup = Effect.fn("Vfio.openGroup")(function* (
  document: unknown,
  options: OpenVfioGroupOptions = {}
): Effect.fn.Return<VfioGroup, VfioDeviceInvalid | VfioError | GroupError, Scope.Scope> {
  const attached = yield* attachVfioDevices(document, options)
  const group = yield* decodeGroup(attached.document)
  const other = group.devices.findIndex((d) => !attached.devices.has(d.id))
  if (other >= 0)
    return yield* new VfioDeviceInvalid({
      path: `devices[${other}]`,
      reason: `${group.devices[other]?.id ?? "this device"} is not a kernel VFIO device (no "vfio": {…}); a VFIO group's devices all are`
    })
  return { group, devices: attached.devices }
})

/**
 * The kernel group as a service, and its layer: `VfioGroup.layer(document)` opens the group's
 * devices and provides the group both as the `GroupRuntime` a program drives and as itself. The
 * devices close when the layer's scope closes. The kernel twin of `VfioUserGroup.layer`.
 */
export const VfioGroup = Object.assign(Context.Service<VfioGroup>("@lockstep/vfio/VfioGroup"), {
  layer: (
    document: unknown,
    options: OpenVfioGroupOptions = {}
  ): Layer.Layer<VfioGroup | GroupRuntime, VfioDeviceInvalid | VfioError | GroupError> =>
    Layer.effectContext(
      Effect.map(openVfioGroup(document, options), (opened) =>
        Context.make(VfioGroup, opened).pipe(
          Context.add(GroupRuntime, { group: opened.group, devices: new Map<string, Device>(opened.devices) })
        )
      )
    )
})
