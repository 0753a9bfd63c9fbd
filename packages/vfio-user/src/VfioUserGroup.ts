import type { Device } from "@lockstep/device"
import { FlagNames, type Flags, flagNames, flagsOf } from "@lockstep/fsm"
import { decodeGroup, type GroupError, GroupRuntime } from "@lockstep/group"
import { Context, Data, Effect, Layer, type Scope } from "effect"
import { connect, type VfioUserDevice } from "./Client.js"
import { describeRequestError } from "./Connection.js"

/** A group file's vfio-user device could not be attached: names the device and why. */
export class VfioUserDeviceInvalid extends Data.TaggedError("VfioUserDeviceInvalid")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.path}: ${this.reason}`
  }
}

/** A group document whose vfio-user devices are connected and whose flags come from their servers. */
export interface AttachedGroup {
  /** The document with every vfio-user device's `flags` filled in from its server. */
  readonly document: unknown
  /** The connected devices, by id. They stay connected until the scope closes. */
  readonly devices: ReadonlyMap<string, VfioUserDevice>
}

/** The keys of a device's `"vfioUser"` object. */
const vfioUserKeys: ReadonlySet<string> = new Set(["socket", "stopCopyLengthEstimate"])

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const declaredFlags = (u: unknown): Flags | undefined | "invalid" => {
  if (u === undefined) return undefined
  if (!Array.isArray(u)) return "invalid"
  const names = u.filter((f): f is (typeof FlagNames)[number] => (FlagNames as ReadonlyArray<unknown>).includes(f))
  return names.length === u.length ? flagsOf(names) : "invalid"
}

/**
 * Connects every device of a raw group document that says `"vfioUser": {"socket": PATH}` and
 * fills its `flags` from the server (`DEVICE_FEATURE` MIGRATION). An optional
 * `"stopCopyLengthEstimate": BYTES` is what a migration assumes for the device's STOP_COPY data
 * if its server cannot tell (no MIG_DATA_SIZE); without it, a migration assumes the worst. A device that also declares
 * `flags` must declare exactly the server's set: a disagreement is invalid input, not a guess.
 * Other devices are left as they are; decode the result with `decodeGroup` afterwards.
 */
export const attachVfioUserDevices = Effect.fn("VfioUser.attachGroup")(function* (
  document: unknown,
  options: { readonly timeoutMs?: number } = {}
): Effect.fn.Return<AttachedGroup, VfioUserDeviceInvalid, Scope.Scope> {
  if (!isRecord(document) || !Array.isArray(document.devices)) return { document, devices: new Map() }
  const devices = new Map<string, VfioUserDevice>()
  const out: Array<unknown> = []
  for (const [i, raw] of document.devices.entries()) {
    if (!isRecord(raw) || raw.vfioUser === undefined) {
      out.push(raw)
      continue
    }
    const path = `devices[${i}].vfioUser`
    const spec = raw.vfioUser
    if (!isRecord(spec) || typeof spec.socket !== "string" || spec.socket.length === 0)
      return yield* new VfioUserDeviceInvalid({
        path,
        reason: 'expected {"socket": "PATH"} (and optionally "stopCopyLengthEstimate": BYTES)'
      })
    const unknown = Object.keys(spec).filter((key) => !vfioUserKeys.has(key))
    if (unknown.length > 0)
      return yield* new VfioUserDeviceInvalid({
        path: `${path}.${unknown[0]}`,
        reason: `unknown key; a vfio-user device takes ${[...vfioUserKeys].map((k) => `"${k}"`).join(" and ")}`
      })
    const estimate = spec.stopCopyLengthEstimate
    if (estimate !== undefined && !(typeof estimate === "number" && Number.isSafeInteger(estimate) && estimate >= 0))
      return yield* new VfioUserDeviceInvalid({
        path: `${path}.stopCopyLengthEstimate`,
        reason: `expected a whole number of bytes (0 or more), got ${JSON.stringify(estimate)}`
      })
    const id = typeof raw.id === "string" ? raw.id : spec.socket
    const kind = raw.kind === "pci" || raw.kind === "mdev" || raw.kind === "ccw" || raw.kind === "ap" ? raw.kind : "pci"
    const socket = spec.socket
    const device = yield* connect({
      path: socket,
      id,
      kind,
      ...(estimate === undefined ? {} : { stopCopyLengthEstimate: estimate }),
      ...(options.timeoutMs === undefined ? {} : { timeout: options.timeoutMs })
    }).pipe(
      Effect.mapError(
        (e) =>
          new VfioUserDeviceInvalid({
            path: `${path}.socket`,
            reason: `cannot attach ${id}: ${describeRequestError(socket, e)}`
          })
      )
    )
    const declared = declaredFlags(raw.flags)
    if (declared === "invalid")
      return yield* new VfioUserDeviceInvalid({
        path: `devices[${i}].flags`,
        reason: `expected a list of ${FlagNames.join(", ")}`
      })
    if (declared !== undefined && declared !== device.flags)
      return yield* new VfioUserDeviceInvalid({
        path: `devices[${i}].flags`,
        reason: `declares ${flagNames(declared).join(",") || "no flags"} but the vfio-user server at ${spec.socket} reports ${flagNames(device.flags).join(",") || "no flags"}`
      })
    devices.set(id, device)
    out.push({ ...raw, flags: flagNames(device.flags) })
  }
  return { document: { ...document, devices: out }, devices }
})

/** A group every device of which is served over vfio-user, connected: what the coordinator drives. */
export interface VfioUserGroup extends GroupRuntime {
  readonly devices: ReadonlyMap<string, VfioUserDevice>
}

/**
 * Connects every device of a group document (each `"vfioUser": {"socket": PATH}`, see
 * {@link attachVfioUserDevices}) and decodes the group, flags from the servers. Every device must
 * be a vfio-user one: to mix backends, attach with `attachVfioUserDevices` and give the devices to
 * `SimulatedGroup.layer`'s `others`, or build a `GroupRuntime` yourself. The connections close
 * with the scope.
 */
export const openVfioUserGroup = Effect.fn("VfioUser.openGroup")(function* (
  document: unknown,
  options: { readonly timeoutMs?: number } = {}
): Effect.fn.Return<VfioUserGroup, VfioUserDeviceInvalid | GroupError, Scope.Scope> {
  const attached = yield* attachVfioUserDevices(document, options)
  const group = yield* decodeGroup(attached.document)
  const other = group.devices.findIndex((d) => !attached.devices.has(d.id))
  if (other >= 0)
    return yield* new VfioUserDeviceInvalid({
      path: `devices[${other}]`,
      reason: `${group.devices[other]?.id ?? "this device"} is not served over vfio-user (no "vfioUser": {"socket": PATH}); a vfio-user group's devices all are (to mix backends, give attached devices to SimulatedGroup.layer's "others")`
    })
  return { group, devices: attached.devices }
})

/**
 * The vfio-user group as a service, and its layer: `VfioUserGroup.layer(document)` connects the
 * group's devices and provides the group both as the `GroupRuntime` a program drives and as
 * itself (`yield* VfioUserGroup` for the connected devices). The connections close when the
 * layer's scope closes. Swap it for `SimulatedGroup.layer` to run the same program on simulated
 * devices.
 */
export const VfioUserGroup = Object.assign(Context.Service<VfioUserGroup>("@lockstep/vfio-user/VfioUserGroup"), {
  layer: (
    document: unknown,
    options: { readonly timeoutMs?: number } = {}
  ): Layer.Layer<VfioUserGroup | GroupRuntime, VfioUserDeviceInvalid | GroupError> =>
    Layer.effectContext(
      Effect.map(openVfioUserGroup(document, options), (opened) =>
        Context.make(VfioUserGroup, opened).pipe(
          Context.add(GroupRuntime, { group: opened.group, devices: new Map<string, Device>(opened.devices) })
        )
      )
    )
})
