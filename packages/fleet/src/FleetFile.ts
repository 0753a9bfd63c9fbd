import { createHash } from "node:crypto"
import { dirname, resolve } from "node:path"
import {
  decodeGroup,
  describeIssue,
  type Group,
  type JsonFileError,
  Migratability,
  readJsonFile
} from "@lockstep/coordinator"
import { resolveSimDeviceConfig, SimDeviceConfig } from "@lockstep/sim"
import { Effect, type FileSystem, Result, Schema } from "effect"
import { FleetError, type FleetProblem } from "./FleetError.js"

/*
 * A fleet file says which hosts there are and which VMs run where:
 *
 *   {
 *     "hosts": [
 *       {"name": "host-a", "nicBandwidth": 26214400, "capacity": 160, "labels": {"gpu": "h100"}},
 *       {"name": "host-b", "nicBandwidth": 26214400, "capacity": 96, "control": "/run/lockstep/host-b/control"}
 *     ],
 *     "vms": [
 *       {"name": "vm01", "host": "host-a", "group": "gpu8.json", "to": "host-b"},
 *       {"name": "vm02", "host": "host-a", "group": {"devices": […]}, "requires": {"gpu": "h100"}},
 *       {"name": "vm03", "host": "host-a", "group": "nvme.json", "backend": "vfio-user",
 *        "sockets": {"host-a": "/run/vm03/a/{device}.sock", "host-b": "/run/vm03/b/{device}.sock"}}
 *     ],
 *     "evacuate": "host-a",
 *     "migration": {"downtimeLimitMs": 300},
 *     "simulation": {"seed": 1, "p2pWritesPerSecond": 20},
 *     "schedule": {"concurrency": 3}
 *   }
 *
 * - `nicBandwidth`: bytes per second each way; every migration out of or into the host shares it.
 * - `capacity`: how many devices the host can hold, VMs already there included.
 * - `control`: the control socket of the process holding the host's devices (started with
 *   `lockstep fleet hosts FLEET.json --host NAME`, its device sockets beside it); without it the
 *   host is simulated in a process `lockstep fleet evacuate` starts, under its state directory.
 * - `group`: a group file (relative to the fleet file) or an inline group.
 * - `backend`: `simulated` (default: the host's agent runs simulated devices, from the group's
 *   `sim` keys) or `vfio-user` (devices served by someone else, at `sockets`: per host, a path
 *   template where `{device}` stands for the device id).
 * - `to`: the destination; without it Lockstep chooses one (capacity, labels, NIC balance).
 * - `requires`: labels a destination must have.
 */

const Name = Schema.String.check(
  Schema.makeFilter((s: string) =>
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(s)
      ? true
      : "a name of letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)"
  )
)
const Positive = Schema.Finite.check(Schema.isGreaterThan(0))
const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))
const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
const AtLeastOne = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const Labels = Schema.Record(Schema.String, Schema.String)

/** A struct whose unknown keys are refused naming the keys it has: a misspelt key is the usual cause. */
const Keyed = <F extends Schema.Struct.Fields>(noun: string, fields: F) =>
  Schema.Struct(fields).annotate({
    messageUnexpectedKey: `unknown key (misspelt?); ${noun} has ${Object.keys(fields).join(", ")}`
  })

const HostDocument = Keyed("a host", {
  name: Name,
  nicBandwidth: Positive,
  capacity: Count,
  labels: Schema.optionalKey(Labels),
  control: Schema.optionalKey(Schema.NonEmptyString)
})

const VmDocument = Keyed("a VM", {
  name: Name,
  host: Schema.String,
  group: Schema.Union([Schema.NonEmptyString, Schema.Record(Schema.String, Schema.Unknown)]).annotate({
    expected: "a group file's path or an inline group"
  }),
  backend: Schema.optionalKey(Schema.Literals(["simulated", "vfio-user"])),
  sockets: Schema.optionalKey(Schema.Record(Schema.String, Schema.NonEmptyString)),
  to: Schema.optionalKey(Schema.String),
  requires: Schema.optionalKey(Labels)
})

/** The migration options a fleet sets for every VM (see `@lockstep/migration`). */
export const MigrationSettings = Keyed("migration", {
  downtimeLimitMs: Schema.optionalKey(NonNegative),
  maxRounds: Schema.optionalKey(AtLeastOne),
  maxPrecopyMs: Schema.optionalKey(NonNegative),
  onLimit: Schema.optionalKey(Schema.Literals(["switch", "abort"])),
  precopy: Schema.optionalKey(Schema.Boolean),
  concurrency: Schema.optionalKey(AtLeastOne),
  errorPolicy: Schema.optionalKey(Schema.Literals(["reset", "quarantine"])),
  chunkBytes: Schema.optionalKey(AtLeastOne),
  peerTimeoutMs: Schema.optionalKey(Positive),
  arcTimeoutMs: Schema.optionalKey(Positive)
})
/** The migration options of a fleet. */
export type MigrationSettings = typeof MigrationSettings.Type

/**
 * The schema of a fleet document: its shape, every key known (unknown keys refused when decoded
 * with `onExcessProperty: "error"`, as {@link loadFleetFile} and {@link decodeFleet} do). The
 * rules across its keys (unique names, hosts that exist, socket templates where a VM's backend
 * needs them) are checked after decoding, with the VMs' groups.
 */
export const FleetDocument = Keyed("a fleet", {
  hosts: Schema.Array(HostDocument),
  vms: Schema.Array(VmDocument),
  evacuate: Schema.optionalKey(Schema.String),
  migration: Schema.optionalKey(MigrationSettings),
  simulation: Schema.optionalKey(
    Keyed("simulation", { seed: Schema.optionalKey(Schema.Int), p2pWritesPerSecond: Schema.optionalKey(NonNegative) })
  ),
  schedule: Schema.optionalKey(Keyed("schedule", { concurrency: Schema.optionalKey(AtLeastOne) }))
}).annotate({ expected: "a fleet (a JSON object)" })

/** The type `FleetDocument` decodes to. */
export type FleetDocument = typeof FleetDocument.Type

/** A host of the fleet. */
export interface FleetHost {
  readonly name: string
  /** Bytes per second each way. */
  readonly nicBandwidth: number
  /** Devices it can hold. */
  readonly capacity: number
  readonly labels: Readonly<Record<string, string>>
  /** Its control socket; `undefined`: simulated by Lockstep, under the state directory. */
  readonly control: string | undefined
}

/** Who serves a VM's devices. */
export type Backend = "simulated" | "vfio-user"

/** A VM of the fleet, its group decoded. */
export interface FleetVm {
  readonly name: string
  readonly host: string
  /** The group document as JSON (inline, or the group file's content): what travels in messages. */
  readonly document: unknown
  readonly group: Group
  readonly backend: Backend
  /** vfio-user VMs: per host, the socket path template of each device (`{device}` = its id). */
  readonly sockets: Readonly<Record<string, string>>
  readonly to: string | undefined
  readonly requires: Readonly<Record<string, string>>
  /** Its state in bytes: the sum of its devices' `sim.stateSize` (the simulation default where unset). */
  readonly bytes: number
}

/** A fleet file, checked. */
export interface Fleet {
  /** The file it came from, if any. */
  readonly source: string | undefined
  readonly hosts: ReadonlyArray<FleetHost>
  readonly vms: ReadonlyArray<FleetVm>
  /** The host the file says to evacuate, if it says. */
  readonly evacuate: string | undefined
  readonly migration: MigrationSettings
  readonly simulation: { readonly seed: number; readonly writesPerSecond: number }
  /** A fixed concurrency, overriding the scheduler's choice. */
  readonly concurrency: number | undefined
  /** A digest of everything above: two runs of the same fleet share it. */
  readonly digest: string
}

/** Defaults of the simulation: few P2P writes, so that pre-copy is not dominated by re-sent pages. */
export const defaultSimulation = { seed: 1, writesPerSecond: 2 } as const

const decodeSim = Schema.decodeUnknownResult(SimDeviceConfig)

/**
 * The rules a well-formed fleet must also obey, across its keys; each names the path it is
 * about. They are checked after decoding, with the VMs' groups (which may be files), so that a
 * fleet's problems of both kinds are reported at once.
 */
const fleetRules = (doc: FleetDocument): Array<FleetProblem> => {
  const problems: Array<FleetProblem> = []
  const hosts = new Map<string, number>()
  doc.hosts.forEach((h, i) => {
    if (hosts.has(h.name)) problems.push({ path: `hosts[${i}].name`, reason: `host ${h.name} is listed twice` })
    else hosts.set(h.name, i)
  })
  if (doc.hosts.length === 0) problems.push({ path: "hosts", reason: "a fleet needs at least one host" })
  const knownHost = (name: string) =>
    hosts.has(name)
      ? undefined
      : `unknown host ${JSON.stringify(name)}; the fleet has ${[...hosts.keys()].join(", ") || "no hosts"}`
  const vms = new Set<string>()
  doc.vms.forEach((vm, i) => {
    const at = `vms[${i}]`
    if (vms.has(vm.name)) problems.push({ path: `${at}.name`, reason: `VM ${vm.name} is listed twice` })
    vms.add(vm.name)
    const host = knownHost(vm.host)
    if (host !== undefined) problems.push({ path: `${at}.host`, reason: host })
    if (vm.to !== undefined) {
      const to = knownHost(vm.to)
      if (to !== undefined) problems.push({ path: `${at}.to`, reason: to })
      else if (vm.to === vm.host) problems.push({ path: `${at}.to`, reason: `${vm.name} already runs on ${vm.to}` })
    }
    const backend = vm.backend ?? "simulated"
    if (backend === "simulated" && vm.sockets !== undefined)
      problems.push({
        path: `${at}.sockets`,
        reason: 'sockets are for "backend": "vfio-user" VMs; simulated devices are served by their host'
      })
    if (backend === "vfio-user") {
      const sockets = vm.sockets ?? {}
      for (const [name, template] of Object.entries(sockets)) {
        const unknown = knownHost(name)
        if (unknown !== undefined) problems.push({ path: `${at}.sockets.${name}`, reason: unknown })
        if (!template.includes("{device}"))
          problems.push({
            path: `${at}.sockets.${name}`,
            reason: 'a socket template must contain "{device}" (the device id)'
          })
      }
      if (sockets[vm.host] === undefined)
        problems.push({
          path: `${at}.sockets`,
          reason: `a vfio-user VM needs the sockets of its devices on its host ${vm.host}`
        })
      if (vm.to !== undefined && sockets[vm.to] === undefined)
        problems.push({ path: `${at}.sockets`, reason: `no sockets for its destination ${vm.to}` })
    }
  })
  if (doc.evacuate !== undefined) {
    const host = knownHost(doc.evacuate)
    if (host !== undefined) problems.push({ path: "evacuate", reason: host })
  }
  return problems
}

const strict = { errors: "all", onExcessProperty: "error", reportInput: true } as const
const decodeDocument = Schema.decodeUnknownResult(FleetDocument)

/** Reads a group file or takes an inline group; checks it and that it can migrate. */
const groupOf = (
  vm: FleetDocument["vms"][number],
  at: string,
  base: string
): Effect.Effect<
  Result.Result<{ readonly document: unknown; readonly group: Group }, ReadonlyArray<FleetProblem>>,
  never,
  FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const problem = (reason: string) => Result.fail([{ path: `${at}.group`, reason }])
    let document: unknown = vm.group
    let loaded: Result.Result<Group, string>
    if (typeof vm.group === "string") {
      // Read as written: the document travels to the hosts' agents, which decode it themselves.
      const read = yield* Effect.result(readJsonFile(resolve(base, vm.group), Schema.Unknown))
      if (Result.isFailure(read)) {
        const { reason } = read.failure
        return problem(
          reason._tag === "JsonFileUnreadable"
            ? `cannot read the group file ${vm.group}: ${reason.detail}`
            : `the group file ${vm.group} is not valid JSON`
        )
      }
      document = read.success
      loaded = Result.mapError(
        yield* Effect.result(decodeGroup(document)),
        (e) => `${vm.group}: ${e.problems.map((p) => (p.path === "" ? p.reason : `${p.path}: ${p.reason}`)).join("; ")}`
      )
    } else {
      loaded = Result.mapError(yield* Effect.result(decodeGroup(vm.group)), (e) => e.message)
    }
    if (Result.isFailure(loaded)) return problem(loaded.failure.split("\n").join("; "))
    const group = loaded.success
    const report = Migratability.check(group)
    if (!report.migratable)
      return problem(
        `the group cannot migrate safely: ${report.blockers.map((b) => `${b.device}: ${b.reason}`).join("; ")}`
      )
    if (vm.backend !== "vfio-user") {
      const bad = group.devices.find((d) => !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(d.id))
      if (bad !== undefined)
        return problem(
          `device id ${JSON.stringify(bad.id)}: a simulated device's id names its socket file; use letters, digits, '.', '_' or '-'`
        )
    }
    return Result.succeed({ document, group })
  })

/** The bytes of a VM's state: each device's simulated state size. */
const bytesOf = (group: Group): number =>
  group.devices.reduce((sum, d) => {
    const sim = d.sim === undefined ? Result.succeed({}) : decodeSim(d.sim)
    return sum + resolveSimDeviceConfig(Result.isSuccess(sim) ? sim.success : {}).stateSize
  }, 0)

/** Initial occupancy must fit: a host cannot already hold more devices than its capacity. */
const occupancyProblems = (doc: FleetDocument, vms: ReadonlyArray<FleetVm>): Array<FleetProblem> =>
  doc.hosts.flatMap((h, i) => {
    const held = vms.filter((vm) => vm.host === h.name).reduce((n, vm) => n + vm.group.devices.length, 0)
    return held > h.capacity
      ? [
          {
            path: `hosts[${i}].capacity`,
            reason: `${h.name} already holds ${held} devices of its VMs, over its capacity ${h.capacity}`
          }
        ]
      : []
  })

/** Where a fleet document came from: its file, and the directory its group files are read from. */
interface FleetOrigin {
  readonly source?: string | undefined
  readonly base?: string | undefined
}

/**
 * A decoded fleet document, checked further: every VM's group (read relative to `base`) and
 * that each can migrate safely, and the hosts' initial occupancy.
 */
const checkFleet = (
  doc: FleetDocument,
  options: FleetOrigin
): Effect.Effect<Fleet, FleetError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const source = options.source
    const fail = (problems: ReadonlyArray<FleetProblem>) => FleetError.invalidFleet({ source, problems })
    const problems = fleetRules(doc)
    const vms: Array<FleetVm> = []
    for (const [i, vm] of doc.vms.entries()) {
      const got = yield* groupOf(vm, `vms[${i}]`, options.base ?? process.cwd())
      if (Result.isFailure(got)) {
        problems.push(...got.failure)
        continue
      }
      vms.push({
        name: vm.name,
        host: vm.host,
        document: got.success.document,
        group: got.success.group,
        backend: vm.backend ?? "simulated",
        sockets: vm.sockets ?? {},
        to: vm.to,
        requires: vm.requires ?? {},
        bytes: bytesOf(got.success.group)
      })
    }
    if (problems.length === 0) problems.push(...occupancyProblems(doc, vms))
    if (problems.length > 0) return yield* fail(problems)
    const hosts: Array<FleetHost> = doc.hosts.map((h) => ({
      name: h.name,
      nicBandwidth: h.nicBandwidth,
      capacity: h.capacity,
      labels: h.labels ?? {},
      control: h.control === undefined ? undefined : resolve(options.base ?? process.cwd(), h.control)
    }))
    const simulation = {
      seed: doc.simulation?.seed ?? defaultSimulation.seed,
      writesPerSecond: doc.simulation?.p2pWritesPerSecond ?? defaultSimulation.writesPerSecond
    }
    const digest = createHash("sha256")
      .update(JSON.stringify({ doc: { ...doc, vms: vms.map((v) => ({ ...v, group: undefined })) } }))
      .digest("hex")
      .slice(0, 16)
    return {
      source,
      hosts,
      vms,
      evacuate: doc.evacuate,
      migration: doc.migration ?? {},
      simulation,
      concurrency: doc.schedule?.concurrency,
      digest
    } satisfies Fleet
  })

/**
 * Checks a fleet document (a parsed JSON value): decoded with {@link FleetDocument}, then every
 * VM's group (read relative to `base`) and that each group can migrate safely. Fails with
 * `FleetError` (`InvalidFleet`) listing every problem with its JSON path.
 */
export const decodeFleet = (
  input: unknown,
  options: FleetOrigin = {}
): Effect.Effect<Fleet, FleetError, FileSystem.FileSystem> =>
  Result.match(decodeDocument(input, strict), {
    onFailure: ({ issue }) =>
      Effect.fail(FleetError.invalidFleet({ source: options.source, problems: describeIssue(issue) })),
    onSuccess: (doc) => checkFleet(doc, options)
  })

const unreadableFleet = ({ reason }: JsonFileError): ReadonlyArray<FleetProblem> => {
  switch (reason._tag) {
    case "JsonFileUnreadable":
      return [
        {
          path: "",
          reason: reason.code === "ENOENT" ? "no such fleet file" : `cannot read the fleet file: ${reason.detail}`
        }
      ]
    case "JsonFileNotJson":
      return [{ path: "", reason: `not valid JSON: ${reason.detail}` }]
    case "JsonFileInvalid":
      return reason.problems
  }
}

/** Reads a fleet file, decoded with {@link FleetDocument} in one step, and checks it; group files are read relative to it. */
export const loadFleetFile = (path: string): Effect.Effect<Fleet, FleetError, FileSystem.FileSystem> =>
  readJsonFile(path, FleetDocument, strict).pipe(
    Effect.mapError((error) => FleetError.invalidFleet({ source: path, problems: unreadableFleet(error) })),
    Effect.flatMap((doc) => checkFleet(doc, { source: path, base: dirname(resolve(path)) }))
  )

/** The host named `name` (the fleet is checked: every name it uses exists). */
export const hostNamed = (fleet: Fleet, name: string): FleetHost | undefined => fleet.hosts.find((h) => h.name === name)
