import { type Group, type GroupRuntime, Migratability } from "@lockstep/coordinator"
import { type DeviceKind, DeviceKinds } from "@lockstep/device"
import { type Flags, flagNames } from "@lockstep/fsm"
import { type Manifest, type ManifestDevice, MaxCompatBytes } from "@lockstep/stream"
import { Effect, Schema, SchemaGetter } from "effect"
import type { Compatibility } from "./Compatibility.js"

/**
 * One reason the destination refuses a manifest. The destination checks the manifest against
 * its own group before touching any device: the same device ids, each with the same kind and
 * migration flags, and compatibility data its backend accepts.
 */
export type Refusal =
  /** The manifest lists a device the destination group does not have. */
  | { readonly _tag: "NoSuchDevice"; readonly device: string }
  /** The destination group has a device the manifest does not list. */
  | { readonly _tag: "MissingDevice"; readonly device: string }
  | { readonly _tag: "KindMismatch"; readonly device: string; readonly offered: DeviceKind; readonly local: DeviceKind }
  | {
      readonly _tag: "FlagsMismatch"
      readonly device: string
      readonly offered: ReadonlyArray<string>
      readonly local: ReadonlyArray<string>
    }
  | { readonly _tag: "Incompatible"; readonly device: string; readonly reason: string }
  /** The destination group itself cannot be migrated into safely. */
  | { readonly _tag: "DestinationNotMigratable"; readonly reason: string }

/*
 * Two refusals were renamed because their tags were also errors' (`UnknownDevice` is a stream
 * format error, `NotMigratable` a migration error). A peer from before the rename still sends
 * the old tags: each is decoded to the new refusal, and never encoded.
 */

const NoSuchDevice = Schema.TaggedStruct("NoSuchDevice", { device: Schema.String })

const NoSuchDeviceFromUnknownDevice = Schema.TaggedStruct("UnknownDevice", { device: Schema.String }).pipe(
  Schema.decodeTo(NoSuchDevice, {
    decode: SchemaGetter.transform(({ device }) => ({ _tag: "NoSuchDevice" as const, device })),
    encode: SchemaGetter.transform(({ device }) => ({ _tag: "UnknownDevice" as const, device }))
  })
)

const DestinationNotMigratable = Schema.TaggedStruct("DestinationNotMigratable", { reason: Schema.String })

const DestinationNotMigratableFromNotMigratable = Schema.TaggedStruct("NotMigratable", { reason: Schema.String }).pipe(
  Schema.decodeTo(DestinationNotMigratable, {
    decode: SchemaGetter.transform(({ reason }) => ({ _tag: "DestinationNotMigratable" as const, reason })),
    encode: SchemaGetter.transform(({ reason }) => ({ _tag: "NotMigratable" as const, reason }))
  })
)

/** A refusal as a peer from before the renames sends it. */
type FormerRefusal =
  | typeof NoSuchDeviceFromUnknownDevice.Encoded
  | typeof DestinationNotMigratableFromNotMigratable.Encoded

/** The wire form of a refusal, as carried in the `refuse` control frame. */
export const RefusalSchema: Schema.Codec<Refusal, Refusal | FormerRefusal> = Schema.Union([
  NoSuchDevice,
  NoSuchDeviceFromUnknownDevice,
  Schema.TaggedStruct("MissingDevice", { device: Schema.String }),
  Schema.TaggedStruct("KindMismatch", {
    device: Schema.String,
    offered: Schema.Literals(DeviceKinds),
    local: Schema.Literals(DeviceKinds)
  }),
  Schema.TaggedStruct("FlagsMismatch", {
    device: Schema.String,
    offered: Schema.Array(Schema.String),
    local: Schema.Array(Schema.String)
  }),
  Schema.TaggedStruct("Incompatible", { device: Schema.String, reason: Schema.String }),
  DestinationNotMigratable,
  DestinationNotMigratableFromNotMigratable
])

const list = (flags: ReadonlyArray<string>): string => (flags.length === 0 ? "none" : flags.join(", "))

/** A refusal as a sentence. */
export const describeRefusal = (r: Refusal): string => {
  switch (r._tag) {
    case "NoSuchDevice":
      return `${r.device} is not in the destination group`
    case "MissingDevice":
      return `${r.device} of the destination group is not in the manifest`
    case "KindMismatch":
      return `${r.device} is a ${r.offered} device on the source but a ${r.local} device here`
    case "FlagsMismatch":
      return `${r.device} has flags ${list(r.offered)} on the source but ${list(r.local)} here`
    case "Incompatible":
      return `${r.device}: ${r.reason}`
    case "DestinationNotMigratable":
      return r.reason
  }
}

/** The manifest a group offers: every device in group order, with its backend's compatibility data. */
export const manifestOf = (
  runtime: GroupRuntime,
  compatibility: Compatibility
): Effect.Effect<ReadonlyArray<ManifestDevice>> =>
  Effect.forEach(runtime.group.devices, (d) => {
    const device = runtime.devices.get(d.id)
    const compat = device === undefined ? Effect.succeed(new Uint8Array(0)) : compatibility.describe(device)
    return Effect.map(compat, (blob) => ({
      id: d.id,
      kind: d.kind,
      flags: d.flags,
      compat: blob.subarray(0, MaxCompatBytes)
    }))
  })

const names = (flags: Flags): ReadonlyArray<string> => flagNames(flags)

/** Why a group cannot migrate at all, as one refusal, if it cannot. */
export const migratabilityRefusal = (group: Group): Refusal | undefined => {
  const report = Migratability.check(group)
  return report.migratable
    ? undefined
    : {
        _tag: "DestinationNotMigratable",
        reason: `the destination group is not migratable: ${report.blockers.map((b) => b.reason).join("; ")}`
      }
}

/**
 * Every reason the destination's group refuses `manifest`, in manifest order then group order;
 * empty when it accepts. Reads nothing but the devices' compatibility data.
 */
export const checkManifest = (
  manifest: Manifest,
  runtime: GroupRuntime,
  compatibility: Compatibility
): Effect.Effect<ReadonlyArray<Refusal>> =>
  Effect.gen(function* () {
    const refusals: Array<Refusal> = []
    const blocked = migratabilityRefusal(runtime.group)
    if (blocked !== undefined) refusals.push(blocked)
    const local = new Map(runtime.group.devices.map((d) => [d.id, d] as const))
    const offered = new Set<string>()
    for (const device of manifest.devices) {
      offered.add(device.id)
      const mine = local.get(device.id)
      const port = runtime.devices.get(device.id)
      if (mine === undefined || port === undefined) {
        refusals.push({ _tag: "NoSuchDevice", device: device.id })
        continue
      }
      if (mine.kind !== device.kind)
        refusals.push({ _tag: "KindMismatch", device: device.id, offered: device.kind, local: mine.kind })
      if (mine.flags !== device.flags)
        refusals.push({
          _tag: "FlagsMismatch",
          device: device.id,
          offered: names(device.flags),
          local: names(mine.flags)
        })
      const reason = compatibility.check(device.compat, yield* compatibility.describe(port))
      if (reason !== undefined) refusals.push({ _tag: "Incompatible", device: device.id, reason })
    }
    for (const d of runtime.group.devices)
      if (!offered.has(d.id)) refusals.push({ _tag: "MissingDevice", device: d.id })
    return refusals
  })
