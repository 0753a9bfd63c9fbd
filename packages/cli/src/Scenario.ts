import { decodeGroup, describeIssue, type ErrorPolicy, type GroupProblem, stop } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import type { State } from "@lockstep/fsm"
import { Compatibility, type DestinationOptions, type SourceOptions } from "@lockstep/migration"
import { FaultPlan, SimDeviceConfig, type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { Effect, type FileSystem, Result, Schema } from "effect"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { readInputDocument } from "./InputFile.js"

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
 *                 "peerTimeoutMs", "arcTimeoutMs"}
 *                                      migration options (see @lockstep/migration); the old
 *                                      "concurrency" is refused: it named one of two limits
 */

const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
const AtLeastOne = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))

const MigrationSettings = Schema.Struct({
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
  arcTimeoutMs: Schema.optionalKey(Positive)
})

/** The migration options a scenario sets. */
export type MigrationSettings = typeof MigrationSettings.Type

const ScenarioKeys = Schema.Struct({
  devices: Schema.Unknown,
  topology: Schema.optionalKey(Schema.Unknown),
  seed: Schema.optionalKey(Schema.Int),
  p2pWritesPerSecond: Schema.optionalKey(NonNegative),
  faults: Schema.optionalKey(
    Schema.Struct({
      source: Schema.optionalKey(Schema.Record(Schema.String, FaultPlan)),
      destination: Schema.optionalKey(Schema.Record(Schema.String, FaultPlan))
    })
  ),
  destination: Schema.optionalKey(
    Schema.Struct({
      sim: Schema.optionalKey(Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Unknown))),
      devices: Schema.optionalKey(Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Unknown)))
    })
  ),
  migration: Schema.optionalKey(MigrationSettings)
})

const decodeKeys = Schema.decodeUnknownResult(ScenarioKeys)

/** Which group of a scenario. */
export type Role = "source" | "destination"

/** A scenario file, checked: the JSON of each side's group document, and the settings. */
export interface Scenario {
  readonly file: string
  /** The group document of each side, faults and destination overrides merged in. */
  readonly documents: Readonly<Record<Role, unknown>>
  readonly seed: number
  readonly writesPerSecond: number
  readonly migration: MigrationSettings
}

type Json = { readonly [key: string]: unknown }
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)

/** The device documents of a group document, with `patch` applied to each device's `sim`. */
const patchDevices = (doc: Json, patch: (id: string, sim: Json) => Json): Json => ({
  ...doc,
  devices: Array.isArray(doc.devices)
    ? doc.devices.map((d: unknown) =>
        isObject(d) && typeof d.id === "string" ? { ...d, sim: patch(d.id, isObject(d.sim) ? d.sim : {}) } : d
      )
    : doc.devices
})

/**
 * The document as it is checked before any device is opened: a kernel device's flags come from
 * the kernel when it is opened, so until then one that declares none is checked as having
 * STOP_COPY alone (every migratable device has it).
 */
const withKernelFlags = (doc: Json): Json =>
  Array.isArray(doc.devices)
    ? {
        ...doc,
        devices: doc.devices.map((d: unknown) =>
          isObject(d) && d.vfio !== undefined && d.flags === undefined ? { ...d, flags: ["STOP_COPY"] } : d
        )
      }
    : doc

/**
 * Reads a scenario file. Everything wrong with it is the user's to fix: exit code 2, with the
 * file name and what is wrong (unknown keys included, so a misspelt setting never silently
 * falls back to its default).
 */
export const loadScenario = (file: string): Effect.Effect<Scenario, CliFailure, FileSystem.FileSystem> =>
  Effect.flatMap(
    readInputDocument(
      file,
      "scenario file",
      "; give the path of one (lockstep demo --print-scenario prints one to start from)"
    ),
    (json) => decodeScenario(json, file)
  )

/** The keys a scenario device may have: the group's own, and its simulation parameters. */
const deviceKeys: ReadonlySet<string> = new Set(["id", "kind", "flags", "sim", "vfioUser", "vfio"])

const decodeSimStrictly = Schema.decodeUnknownResult(SimDeviceConfig)
const strict = { errors: "all", onExcessProperty: "error", reportInput: true } as const

/** A problem as one line: `path: reason`. */
const problemLine = (problem: GroupProblem): string =>
  `${problem.path === "" ? "" : `${problem.path}: `}${problem.reason}`

/** `problem`'s path under `prefix`: `devices[0].sim` + `stateSize` = `devices[0].sim.stateSize`. */
const under = (prefix: string, problem: GroupProblem): string =>
  `${problem.path === "" ? prefix : problem.path.startsWith("[") ? `${prefix}${problem.path}` : `${prefix}.${problem.path}`}: ${problem.reason}`

/** Problems of a `sim` block (unknown keys included) at `path`. */
const simProblems = (path: string, sim: unknown): ReadonlyArray<string> => {
  const decoded = decodeSimStrictly(sim, strict)
  return Result.isFailure(decoded) ? describeIssue(decoded.failure.issue).map((p) => under(path, p)) : []
}

/**
 * Keys of each device and of its `sim` block that a scenario does not know, and `sim` values
 * that are wrong, each with its path: a misspelt setting must never fall back to its default.
 */
const deviceProblems = (json: Json): ReadonlyArray<string> =>
  (Array.isArray(json.devices) ? json.devices : []).flatMap((device: unknown, i: number) => {
    if (!isObject(device)) return []
    const unknown = Object.keys(device)
      .filter((key) => !deviceKeys.has(key))
      .map((key) => `devices[${i}].${key}: unexpected key; a device has ${[...deviceKeys].join(", ")}`)
    return [...unknown, ...(device.sim === undefined ? [] : simProblems(`devices[${i}].sim`, device.sim))]
  })

/** The ids of the devices a group document lists (those that have one). */
const deviceIdsOf = (json: Json): ReadonlySet<string> =>
  new Set(
    (Array.isArray(json.devices) ? json.devices : []).flatMap((d: unknown) =>
      isObject(d) && typeof d.id === "string" ? [d.id] : []
    )
  )

/**
 * Checks a scenario given as a parsed JSON value (an embedded one, or a file's content);
 * `file` names it in every message. Every problem is reported at once, each with its path:
 * unknown or wrong keys at the top, in a device, in its `sim` block or in the destination's
 * overrides, the group's own problems, and faults or overrides naming devices the group lacks.
 */
export const decodeScenario = (json: unknown, file: string): Effect.Effect<Scenario, CliFailure> =>
  Effect.gen(function* () {
    if (!isObject(json)) return yield* invalidInput(`${file}: a scenario is a JSON object`)
    const decoded = decodeKeys(json, strict)
    const keys = Result.isSuccess(decoded) ? decoded.success : undefined
    const group = yield* Effect.result(decodeGroup(withKernelFlags(json)))
    const ids = deviceIdsOf(json)
    // Read from the document itself, so these are reported even when other keys are wrong.
    const recordAt = (value: unknown, key: string): Json => (isObject(value) && isObject(value[key]) ? value[key] : {})
    const overrides = recordAt(recordAt(json, "destination"), "sim")
    const named = [
      ...Object.keys(recordAt(recordAt(json, "faults"), "source")).map((id) => [`faults.source.${id}`, id] as const),
      ...Object.keys(recordAt(recordAt(json, "faults"), "destination")).map(
        (id) => [`faults.destination.${id}`, id] as const
      ),
      ...Object.keys(overrides).map((id) => [`destination.sim.${id}`, id] as const),
      ...Object.keys(recordAt(recordAt(json, "destination"), "devices")).map(
        (id) => [`destination.devices.${id}`, id] as const
      )
    ].filter(([, id]) => !ids.has(id))
    // A kernel device migrates into another kernel device: the destination must name its own.
    const backends = keys?.destination?.devices ?? {}
    const shared = Result.isSuccess(group)
      ? group.success.devices.filter((d) => d.vfio !== undefined && backends[d.id]?.vfio === undefined)
      : []
    // The old key named one of two limits: say which to write instead of just "unexpected".
    const oldConcurrency = isObject(json.migration) && Object.hasOwn(json.migration, "concurrency")
    const keyProblems = Result.isFailure(decoded) ? describeIssue(decoded.failure.issue) : []
    const problems = [
      ...keyProblems.filter((p) => !(oldConcurrency && p.path === "migration.concurrency")).map(problemLine),
      ...(oldConcurrency
        ? [
            'migration.concurrency: ambiguous and no longer read: write "ioConcurrency" for the devices read or written at once, or "arcConcurrency" for the arcs in flight at once in a group transition'
          ]
        : []),
      ...(Result.isFailure(group) ? group.failure.problems.map(problemLine) : []),
      ...deviceProblems(json),
      ...Object.entries(overrides).flatMap(([id, sim]) => simProblems(`destination.sim.${id}`, sim)),
      ...named.map(([path, id]) => `${path}: unknown device "${id}"`),
      ...shared.map(
        (d) =>
          `destination.devices.${d.id}: missing; a kernel device migrates into another kernel device: name it as {"vfio": {"sysfsdev": …}}`
      )
    ]
    if (problems.length > 0 || keys === undefined)
      return yield* invalidInput(`${file}: not a valid scenario:\n  ${problems.join("\n  ")}`)
    const { seed, p2pWritesPerSecond, faults, destination, migration, ...groupKeys } = json
    const side = (role: Role): unknown => {
      const plans = keys.faults?.[role] ?? {}
      const overrides = role === "destination" ? (keys.destination?.sim ?? {}) : {}
      const faultsOf = (id: string) => {
        const plan = isObject(faults) && isObject(faults[role]) ? faults[role][id] : undefined
        return plans[id] === undefined ? {} : { faults: plan }
      }
      const backend = role === "destination" ? backends : {}
      const own =
        isObject(groupKeys) && Array.isArray(groupKeys.devices)
          ? {
              ...groupKeys,
              devices: groupKeys.devices.map((d: unknown) =>
                isObject(d) && typeof d.id === "string" && backend[d.id] !== undefined ? { ...d, ...backend[d.id] } : d
              )
            }
          : groupKeys
      return patchDevices(own, (id, sim) => ({ ...sim, ...overrides[id], ...faultsOf(id) }))
    }
    return {
      file,
      documents: { source: side("source"), destination: side("destination") },
      seed: keys.seed ?? 1,
      writesPerSecond: keys.p2pWritesPerSecond ?? 1000,
      migration: keys.migration ?? {}
    }
  })

/**
 * The simulated group of one side. The destination's memory differs from the source's (its
 * seeds carry the role), and it is parked in STOP before anything else: an incoming group
 * waits stopped, and never runs unless the migration commits. Its parking arcs count in the
 * faults' `nth`.
 */
export const simulateSide = (scenario: Scenario, role: Role): Effect.Effect<SimulatedGroup, CliFailure> =>
  Effect.gen(function* () {
    const group = yield* decodeGroup(scenario.documents[role]).pipe(
      Effect.mapError((e) => invalidInput(`${scenario.file} (${role}): ${e.message}`))
    )
    const sim = yield* simulateGroup(group, {
      seed: scenario.seed,
      writesPerSecond: scenario.writesPerSecond,
      // A device a scenario backs by vfio-user is that backend's, not the simulator's.
      simulates: (d) => d.vfioUser === undefined,
      ...(role === "destination" ? { role } : {})
    }).pipe(Effect.mapError((e) => invalidInput(`${scenario.file} (${role}): ${e.message}`)))
    if (role === "destination")
      yield* stop(sim).pipe(
        Effect.mapError(
          (e) =>
            new CliFailure({ text: `the destination group could not be parked in STOP: ${e.message}`, exitCode: 1 })
        )
      )
    return sim
  })

/** Compatibility data of simulated devices: their state size and page size. */
export const simCompatibility = (groups: ReadonlyArray<SimulatedGroup>): Compatibility.Compatibility =>
  Compatibility.jsonFacts((device: Device) => {
    for (const g of groups) {
      const sim = g.devices.get(device.id)
      if (sim === device) return { stateSize: sim.config.stateSize, pageSize: sim.config.pageSize }
    }
    return undefined
  })

const sessionOptionsOf = (m: MigrationSettings) => ({
  ...(m.ioConcurrency === undefined ? {} : { ioConcurrency: m.ioConcurrency }),
  ...(m.arcConcurrency === undefined ? {} : { arcConcurrency: m.arcConcurrency }),
  ...(m.errorPolicy === undefined ? {} : { errorPolicy: m.errorPolicy satisfies ErrorPolicy }),
  ...(m.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: m.peerTimeoutMs }),
  ...(m.arcTimeoutMs === undefined ? {} : { arcTimeoutMs: m.arcTimeoutMs })
})

/** The source options a scenario sets (journal and events are the caller's). */
export const sourceOptionsOf = (m: MigrationSettings): SourceOptions => ({
  ...sessionOptionsOf(m),
  ...(m.downtimeLimitMs === undefined ? {} : { downtimeLimitMs: m.downtimeLimitMs }),
  ...(m.bandwidthLimit === undefined ? {} : { bandwidthLimit: m.bandwidthLimit }),
  ...(m.maxRounds === undefined ? {} : { maxRounds: m.maxRounds }),
  ...(m.maxPrecopyMs === undefined ? {} : { maxPrecopyMs: m.maxPrecopyMs }),
  ...(m.onLimit === undefined ? {} : { onLimit: m.onLimit }),
  ...(m.precopy === undefined ? {} : { precopy: m.precopy }),
  ...(m.chunkBytes === undefined ? {} : { chunkBytes: m.chunkBytes })
})

/** The destination options a scenario sets. */
export const destinationOptionsOf = (m: MigrationSettings): DestinationOptions => sessionOptionsOf(m)

/** Every device's state, as one JSON-ready record. */
export const statesOf = (sim: SimulatedGroup): Effect.Effect<Record<string, State | "UNKNOWN">> =>
  Effect.map(
    Effect.forEach([...sim.devices.values()], (d) =>
      d.getState.pipe(
        Effect.catch(() => Effect.succeed<State | "UNKNOWN">("UNKNOWN")),
        Effect.map((s) => [d.id, s] as const)
      )
    ),
    (rows) => Object.fromEntries(rows)
  )

/** P2P violations the fabric recorded (pending writes landed first). */
export const violationsOf = (sim: SimulatedGroup): Effect.Effect<number> =>
  Effect.map(sim.fabric.settle, () => sim.fabric.violations().length)

/** Bytes as a short text: `545.7 KiB`. */
export const formatBytes = (bytes: number): string => {
  for (const [unit, size] of [
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10]
  ] as const) {
    if (bytes >= size) return `${(bytes / size).toFixed(1)} ${unit}`
  }
  return `${bytes} bytes`
}

/** Milliseconds as a short text: `49.1 ms`. */
export const formatMs = (ms: number): string => `${Number.isInteger(ms) ? ms : ms.toFixed(1)} ms`

/** A downtime estimate: like `formatMs`, or `unbounded` when a stop-copy length is unknown. */
export const formatEstimateMs = (ms: number): string =>
  Number.isFinite(ms) ? formatMs(Number(ms.toFixed(1))) : "unbounded"

/** States as `gpu0 RUNNING, gpu1 RUNNING`. */
export const formatStates = (states: Readonly<Record<string, string>>): string =>
  Object.entries(states)
    .map(([id, s]) => `${id} ${s}`)
    .join(", ")
