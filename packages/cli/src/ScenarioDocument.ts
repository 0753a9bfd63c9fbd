import { TopologyDocument } from "@lockstep/coordinator"
import { DeviceKinds } from "@lockstep/device"
import { FlagsSchema } from "@lockstep/fsm"
import { FaultPlan, SimDeviceConfig } from "@lockstep/sim"
import { Result, Schema } from "effect"

/*
 * A scenario file is a group file (devices with their `sim` parameters, and a topology) plus
 * optional keys that set up a simulated migration:
 *
 *   "seed": 7                          fabric and device memory seed (default 1)
 *   "p2pWritesPerSecond": 2000         P2P writes per edge per second while the initiator runs (default 1000)
 *   "faults": {"source": {"gpu0": [FAULT, …]}, "destination": {…}}
 *                                      fault plans per side and device, replacing the device's sim.faults
 *   "destination": {"sim": {"gpu1": {"stateSize": 131072}}}
 *                                      sim parameters that differ on the destination (merged over the device's)
 *   "destination": {"devices": {"gpu1": {"vfio": {"sysfsdev": "/sys/bus/pci/devices/0000:02:00.0"}}}}
 *                                      the destination device's backend keys, as a group file's device has them
 *                                      (they replace the source's): a kernel device migrates into another one
 *   "migration": {"downtimeLimitMs", "bandwidthLimit", "maxRounds", "maxPrecopyMs", "onLimit",
 *                 "precopy", "ioConcurrency", "arcConcurrency", "errorPolicy", "chunkBytes",
 *                 "peerTimeoutMs", "arcTimeoutMs", "channels"}
 *                                      migration options (see @lockstep/migration); the old
 *                                      "concurrency" is refused: it named one of two limits
 *
 * Every key is known: a document is decoded with unknown keys refused (`onExcessProperty:
 * "error"`), at every depth, so a misspelt setting never silently falls back to its default.
 * The group rules (unique ids, STOP_COPY, edges between known P2P devices) are the group's,
 * checked on the group each side becomes; the rules here are the scenario's own.
 */

/** How a scenario document is decoded: every problem, unknown keys refused, inputs reported. */
export const scenarioParseOptions = { errors: "all", onExcessProperty: "error", reportInput: true } as const

/**
 * JSON that `schema` accepts (unknown keys refused), kept as it was written: the parts of a
 * scenario that become another document (a device's `sim` block and flags, a fault plan) are
 * checked here, with their paths, and handed on as JSON to the group each side becomes.
 */
const JsonAcceptedBy = <T, E>(schema: Schema.Codec<T, E>) => {
  const decode = Schema.decodeUnknownResult(schema)
  return Schema.Unknown.check(
    Schema.makeFilter((json) => {
      const decoded = decode(json, scenarioParseOptions)
      return Result.isFailure(decoded) ? decoded.failure.issue : undefined
    })
  )
}

const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
const AtLeastOne = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

/** A key a scenario no longer reads, refused with what to write instead. */
const Retired = (instead: string) => Schema.Unknown.check(Schema.makeFilter(() => instead))

/** The migration options a scenario sets (see `@lockstep/migration`). */
export const MigrationSettings = Schema.Struct({
  downtimeLimitMs: Schema.optionalKey(NonNegative),
  bandwidthLimit: Schema.optionalKey(Positive),
  maxRounds: Schema.optionalKey(AtLeastOne),
  maxPrecopyMs: Schema.optionalKey(NonNegative),
  onLimit: Schema.optionalKey(Schema.Literals(["switch", "abort"])),
  precopy: Schema.optionalKey(Schema.Boolean),
  ioConcurrency: Schema.optionalKey(AtLeastOne),
  arcConcurrency: Schema.optionalKey(AtLeastOne),
  errorPolicy: Schema.optionalKey(Schema.Literals(["reset", "quarantine"])),
  chunkBytes: Schema.optionalKey(AtLeastOne),
  peerTimeoutMs: Schema.optionalKey(Positive),
  arcTimeoutMs: Schema.optionalKey(Positive),
  channels: Schema.optionalKey(AtLeastOne),
  // The old key named one of two limits: say which to write instead of just "unexpected".
  concurrency: Schema.optionalKey(
    Retired(
      'ambiguous and no longer read: write "ioConcurrency" for the devices read or written at once, or "arcConcurrency" for the arcs in flight at once in a group transition'
    )
  )
})

/** The migration options a scenario sets. */
export type MigrationSettings = typeof MigrationSettings.Type

const deviceKeys = ["id", "kind", "flags", "sim", "vfioUser", "vfio"] as const

/**
 * A device of a scenario: the group's keys, its simulation parameters, and its backend keys
 * (`vfioUser`, `vfio`), whose contents the backend's package checks when it opens the device.
 * Flags may be absent only on a kernel device, whose flags the kernel gives.
 */
export const ScenarioDevice = Schema.Struct({
  id: Schema.String,
  kind: Schema.Literals(DeviceKinds),
  flags: Schema.optionalKey(JsonAcceptedBy(FlagsSchema)),
  sim: Schema.optionalKey(JsonAcceptedBy(SimDeviceConfig)),
  vfioUser: Schema.optionalKey(Schema.Unknown),
  vfio: Schema.optionalKey(Schema.Unknown)
}).annotate({ messageUnexpectedKey: `unexpected key; a device has ${deviceKeys.join(", ")}` })

/** A scenario device as written. */
export type ScenarioDevice = typeof ScenarioDevice.Type

/** Per device id, what a side replaces. */
const PerDevice = <S extends Schema.Top>(value: S) => Schema.Record(Schema.String, value)

const ScenarioShape = Schema.Struct({
  devices: Schema.Array(ScenarioDevice),
  topology: Schema.optionalKey(TopologyDocument),
  seed: Schema.optionalKey(Schema.Int),
  p2pWritesPerSecond: Schema.optionalKey(NonNegative),
  faults: Schema.optionalKey(
    Schema.Struct({
      source: Schema.optionalKey(PerDevice(JsonAcceptedBy(FaultPlan))),
      destination: Schema.optionalKey(PerDevice(JsonAcceptedBy(FaultPlan)))
    })
  ),
  destination: Schema.optionalKey(
    Schema.Struct({
      sim: Schema.optionalKey(PerDevice(JsonAcceptedBy(SimDeviceConfig))),
      devices: Schema.optionalKey(PerDevice(Schema.Record(Schema.String, Schema.Unknown)))
    })
  ),
  migration: Schema.optionalKey(MigrationSettings)
}).annotate({ expected: "a scenario (a JSON object)" })

type Json = { readonly [key: string]: unknown }
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)
const recordAt = (value: unknown, key: string): Json => (isObject(value) && isObject(value[key]) ? value[key] : {})

/**
 * The scenario's own rules, across its keys: faults and destination overrides name devices
 * of the group, and a kernel device names the kernel device it migrates into. They read the
 * document as JSON, so that they judge the well-formed parts of a document whose shape is
 * refused too (see {@link ScenarioRules}), and every problem is reported at once.
 */
const scenarioRules = (json: unknown): Array<Schema.FilterIssue> => {
  const devices = (isObject(json) && Array.isArray(json.devices) ? json.devices : []).filter(isObject)
  const ids = new Set(devices.flatMap((d) => (typeof d.id === "string" ? [d.id] : [])))
  const named: Array<readonly [ReadonlyArray<string>, Json]> = [
    [["faults", "source"], recordAt(recordAt(json, "faults"), "source")],
    [["faults", "destination"], recordAt(recordAt(json, "faults"), "destination")],
    [["destination", "sim"], recordAt(recordAt(json, "destination"), "sim")],
    [["destination", "devices"], recordAt(recordAt(json, "destination"), "devices")]
  ]
  const unknown = named.flatMap(([path, perDevice]) =>
    Object.keys(perDevice)
      .filter((id) => !ids.has(id))
      .map((id) => ({ path: [...path, id], issue: `unknown device ${JSON.stringify(id)}` }))
  )
  const backends = recordAt(recordAt(json, "destination"), "devices")
  const shared = devices.flatMap((d) =>
    typeof d.id === "string" && d.vfio !== undefined && recordAt(backends, d.id).vfio === undefined
      ? [
          {
            path: ["destination", "devices", d.id],
            issue: 'missing; a kernel device migrates into another kernel device: name it as {"vfio": {"sysfsdev": …}}'
          }
        ]
      : []
  )
  return [...unknown, ...shared]
}

/**
 * The schema of a scenario document: its shape, every key known at every depth (decode it
 * with {@link scenarioParseOptions}), and the scenario's rules across keys.
 */
export const ScenarioDocument = ScenarioShape.check(Schema.makeFilter(scenarioRules))

/**
 * The scenario's rules alone, for a document whose shape {@link ScenarioDocument} refused (its
 * filter then does not run): its problems are reported with the shape's.
 */
export const ScenarioRules = Schema.Unknown.check(Schema.makeFilter(scenarioRules))

/** A scenario document as written (the parts that become a group kept as JSON). */
export type ScenarioDocument = typeof ScenarioDocument.Type
