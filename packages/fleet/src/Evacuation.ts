import { Buffer } from "node:buffer"
import { randomBytes } from "node:crypto"
import { relative } from "node:path"
import { attachVfioUserDevices } from "@lockstep/vfio-user"
import { Cause, Effect, Exit, Result, Schema } from "effect"
import type * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { EvacuateHost, type EvacuateHostPayload } from "./EvacuateHost.js"
import { FleetError } from "./FleetError.js"
import type { Fleet, FleetVm } from "./FleetFile.js"
import * as FleetStore from "./FleetStore.js"
import * as HostControl from "./HostControl.js"
import type { MigrateVmPayload } from "./MigrateVm.js"
import { place } from "./Placement.js"
import { type EvacuationSchedule, schedule } from "./Schedule.js"
import { controlSocket, deviceSocket, deviceSocketTemplate, maxSocketPathBytes } from "./StateDirectory.js"
import { vmKeyOf } from "./Switchover.js"

/**
 * Everything between a fleet file and a running evacuation: the checks that must pass before
 * anything moves (placement, every host involved answering and holding what the file says,
 * vfio-user devices answering, socket paths that fit), the per-VM messages, and starting (or
 * resuming) the `EvacuateHost` workflow. A resumed evacuation keeps the plan it was started
 * with: its placement never changes half-way.
 */

/** How many times a VM's migration is attempted, crashes included, before it is rolled back for good. */
export const maxAttempts = 3

/** A path as a person should see it: relative to the working directory. */
export const shown = (path: string): string => relative(process.cwd(), path) || "."

/** The host to evacuate: the one named, else the fleet file's `evacuate`. */
export const hostToEvacuate = (fleet: Fleet, named: string | undefined): Effect.Effect<string, FleetError> => {
  const host = named ?? fleet.evacuate
  if (host === undefined)
    return Effect.fail(
      FleetError.invalidFleet({
        source: fleet.source,
        problems: [{ path: "evacuate", reason: 'say which host to evacuate: "evacuate" in the fleet file, or --host' }]
      })
    )
  if (!fleet.hosts.some((h) => h.name === host))
    return Effect.fail(
      FleetError.invalidFleet({
        source: fleet.source,
        problems: [
          {
            path: "evacuate",
            reason: `unknown host ${JSON.stringify(host)}; the fleet has ${fleet.hosts.map((h) => h.name).join(", ")}`
          }
        ]
      })
    )
  return Effect.succeed(host)
}

/** Checks that a host answers on its control socket and holds its simulated VMs. */
const checkHost = (fleet: Fleet, state: string, host: string) =>
  Effect.gen(function* () {
    const endpoint = controlSocket(fleet, state, host)
    const inventory = yield* HostControl.inventory(endpoint, 3_000).pipe(
      Effect.mapError((e) => FleetError.hostUnreachable({ host, endpoint: shown(endpoint), reason: e.reason }))
    )
    if (inventory.host !== host)
      return yield* FleetError.hostUnreachable({
        host,
        endpoint: shown(endpoint),
        reason: `host ${inventory.host} answers there`
      })
    const held = new Set(inventory.vms.filter((v) => v.role === "home").map((v) => v.vm))
    const missing = fleet.vms.filter((vm) => vm.host === host && vm.backend === "simulated" && !held.has(vm.name))
    if (missing.length > 0)
      return yield* FleetError.hostUnreachable({
        host,
        endpoint: shown(endpoint),
        reason: `it does not hold ${missing.map((v) => v.name).join(", ")} (was it started with another fleet file?)`
      })
  })

/**
 * Checks that every VM to move runs on its source (every device RUNNING), as the fleet file
 * says: a VM that was moved already (an earlier evacuation) is not moved again from where the
 * file says it was.
 */
export const checkSourcesRun = (fleet: Fleet, state: string, planned: PlannedEvacuation) =>
  Effect.gen(function* () {
    const endpoint = controlSocket(fleet, state, planned.host)
    const simulated = planned.schedule.vms.filter((s) => s.vm.backend === "simulated")
    if (simulated.length === 0) return
    const inventory = yield* HostControl.inventory(endpoint, 3_000).pipe(
      Effect.mapError((e) =>
        FleetError.hostUnreachable({ host: planned.host, endpoint: shown(endpoint), reason: e.reason })
      )
    )
    for (const { vm } of simulated) {
      const devices = inventory.vms.find((v) => v.vm === vm.name && v.role === "home")?.devices ?? []
      const stopped = devices.filter((d) => d.state !== "RUNNING" || d.inFlight !== undefined)
      if (stopped.length > 0)
        return yield* FleetError.devicesUnreachable({
          vm: vm.name,
          host: planned.host,
          reason: `it does not run there (${stopped.map((d) => `${d.id} ${d.state}`).join(", ")}); was it moved by an earlier evacuation? (lockstep fleet status)`
        })
    }
  })

/** Checks that a vfio-user VM's devices answer on its host (and lets them go again). */
const checkDevices = (fleet: Fleet, state: string, vm: FleetVm) =>
  Effect.gen(function* () {
    const template = deviceSocketTemplate(fleet, state, vm, vm.host)
    const doc = vm.document as { readonly devices?: ReadonlyArray<Record<string, unknown>> }
    const served = {
      ...doc,
      devices: (doc.devices ?? []).map((d) => ({ ...d, vfioUser: { socket: deviceSocket(template, String(d.id)) } }))
    }
    const attached = yield* Effect.exit(Effect.scoped(attachVfioUserDevices(served, { timeoutMs: 3_000 })))
    if (Exit.isFailure(attached)) {
      const error = Cause.squash(attached.cause)
      return yield* FleetError.devicesUnreachable({
        vm: vm.name,
        host: vm.host,
        reason: error instanceof Error ? error.message : String(error)
      })
    }
  })

const socketProblems = (
  fleet: Fleet,
  state: string,
  vms: ReadonlyArray<{ vm: FleetVm; hosts: ReadonlyArray<string> }>
) =>
  vms.flatMap(({ vm, hosts }) =>
    hosts.flatMap((host) => {
      const longest = vm.group.devices
        .map((d) => deviceSocket(deviceSocketTemplate(fleet, state, vm, host), d.id))
        .find((p) => Buffer.byteLength(p) > maxSocketPathBytes)
      return longest === undefined
        ? []
        : [
            {
              path: `vms.${vm.name}`,
              reason: `the socket ${shown(longest)} on ${host} is longer than a UNIX socket path may be (${maxSocketPathBytes} bytes); use a shorter state directory`
            }
          ]
    })
  )

/** A checked evacuation, ready to start. */
export interface PlannedEvacuation {
  readonly host: string
  readonly schedule: EvacuationSchedule
  /** The workflow's payload for evacuation id `id`. */
  readonly payload: (id: string) => EvacuateHostPayload
}

/**
 * Plans the evacuation of `host` and checks everything that can be checked before anything
 * moves. Fails with a `FleetError` for the first problem found: `NoCapacity`, `HostUnreachable`,
 * `DevicesUnreachable`, or `InvalidFleet` (socket paths too long).
 */
export const plan = (fleet: Fleet, host: string, state: string): Effect.Effect<PlannedEvacuation, FleetError> =>
  Effect.gen(function* () {
    const placements = place(fleet, host)
    if (Result.isFailure(placements)) return yield* placements.failure
    const scheduled = schedule(fleet, placements.success)
    const tooLong = socketProblems(
      fleet,
      state,
      scheduled.vms.map((s) => ({ vm: s.vm, hosts: [s.vm.host, s.destination] }))
    )
    if (tooLong.length > 0) return yield* FleetError.invalidFleet({ source: fleet.source, problems: tooLong })
    // A host must answer on its control socket if it has one, or if a simulated VM leaves or lands there.
    const involved = new Set([host, ...scheduled.vms.map((s) => s.destination)])
    const needControl = [...involved].filter(
      (h) =>
        fleet.hosts.find((x) => x.name === h)?.control !== undefined ||
        scheduled.vms.some((s) => s.vm.backend === "simulated" && (s.vm.host === h || s.destination === h))
    )
    yield* Effect.forEach(needControl, (h) => checkHost(fleet, state, h), { concurrency: "unbounded", discard: true })
    yield* Effect.forEach(
      scheduled.vms.filter((s) => s.vm.backend === "vfio-user"),
      (s) => checkDevices(fleet, state, s.vm),
      { discard: true }
    )
    const nic = (name: string) => fleet.hosts.find((h) => h.name === name)?.nicBandwidth ?? 1
    const capacity = (name: string) => fleet.hosts.find((h) => h.name === name)?.capacity ?? 0
    const resident = (name: string) =>
      fleet.vms.filter((v) => v.host === name).reduce((n, v) => n + v.group.devices.length, 0)
    const payload = (evacuation: string): EvacuateHostPayload => ({
      evacuation,
      host,
      concurrency: scheduled.concurrency,
      vms: scheduled.vms.map(({ vm, destination }, order): MigrateVmPayload => {
        const simulated = vm.backend === "simulated"
        const sourceControl = controlSocket(fleet, state, vm.host)
        const destinationControl = controlSocket(fleet, state, destination)
        return {
          evacuation,
          vm: vm.name,
          reserve: {
            evacuation,
            vm: vm.name,
            host: destination,
            devices: vm.group.devices.length,
            capacity: capacity(destination),
            residentDevices: resident(destination),
            document: vm.document,
            sockets: deviceSocketTemplate(fleet, state, vm, destination),
            ...(simulated ? { control: destinationControl } : {})
          },
          transfer: {
            evacuation,
            vm: vm.name,
            source: vm.host,
            destination,
            document: vm.document,
            sourceSockets: deviceSocketTemplate(fleet, state, vm, vm.host),
            destinationSockets: deviceSocketTemplate(fleet, state, vm, destination),
            ...(simulated ? { sourceControl, destinationControl } : {}),
            links: [
              { host: vm.host, direction: "out", bytesPerSecond: nic(vm.host) },
              { host: destination, direction: "in", bytesPerSecond: nic(destination) }
            ],
            priority: order,
            settings: fleet.migration,
            maxAttempts
          }
        }
      })
    })
    return { host, schedule: scheduled, payload }
  })

const decodePayload = Schema.decodeUnknownResult(Schema.fromJsonString(EvacuateHost.payloadSchema))
const encodePayload = Schema.encodeSync(Schema.fromJsonString(EvacuateHost.payloadSchema))

/** An evacuation under way (or just begun). */
export interface StartedEvacuation {
  readonly payload: EvacuateHostPayload
  /** An unfinished evacuation of the same fleet and host was found and is resumed. */
  readonly resumed: boolean
  /**
   * Set when the evacuation had already finished, at this time, before this run: the run only
   * reads it back (see `startOrResume`).
   */
  readonly finishedAt?: number
}

/**
 * The newest finished evacuation of this fleet and host in which `vm` migrated, read back: a
 * source that no longer runs at home because that evacuation moved it is not a reason to refuse,
 * it is the answer (the run that moved it may have died between its end and its report).
 */
const movedEarlier = (fleet: Fleet, host: string, vm: string) =>
  Effect.gen(function* () {
    const all = yield* FleetStore.evacuations
    const done = all.filter((e) => e.fleet === fleet.digest && e.host === host && e.status === "done")
    const latest = done.reduce<FleetStore.EvacuationRecord | undefined>(
      (a, e) => (a === undefined || (e.finishedAt ?? 0) > (a.finishedAt ?? 0) ? e : a),
      undefined
    )
    if (latest === undefined) return undefined
    const vms = yield* FleetStore.vmsOf(latest.id)
    if (vms.find((v) => v.vm === vm)?.status !== "migrated") return undefined
    const stored = decodePayload(latest.plan)
    if (Result.isFailure(stored)) return undefined
    const started: StartedEvacuation = {
      payload: stored.success,
      resumed: true,
      ...(latest.finishedAt === undefined ? {} : { finishedAt: latest.finishedAt })
    }
    return started
  })

/**
 * The evacuation to run: the unfinished one of this fleet (same digest) and host, with the plan
 * it was started with, if there is one; else a new one, recorded with its VMs. Atomic: several
 * processes asked at once (runners sharing Postgres) join one evacuation.
 */
export const startOrResume = <E = never>(
  fleet: Fleet,
  planned: PlannedEvacuation,
  now: number,
  /** Checked before a new evacuation is recorded (not when one is resumed). */
  beforeNew: Effect.Effect<void, E> = Effect.void as Effect.Effect<void, E>
): Effect.Effect<StartedEvacuation, SqlError | E, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    yield* FleetStore.migrate
    const unfinished = yield* FleetStore.claimOf(fleet.digest, planned.host)
    if (unfinished === undefined) {
      // Sources that do not run at home because the last evacuation moved them: read that one back.
      const checked = yield* Effect.result(beforeNew)
      if (Result.isFailure(checked)) {
        const e = checked.failure
        const earlier =
          e instanceof FleetError && e.reason._tag === "DevicesUnreachable"
            ? yield* movedEarlier(fleet, planned.host, e.reason.vm)
            : undefined
        if (earlier !== undefined) return earlier
        return yield* Effect.fail(e)
      }
    }
    const id = `${planned.host}-${new Date(now)
      .toISOString()
      .replace(/[-:.TZ]/g, "")
      .slice(0, 14)}-${randomBytes(2).toString("hex")}`
    const payload = planned.payload(id)
    const record = yield* FleetStore.claimEvacuation(
      {
        id,
        fleet: fleet.digest,
        host: planned.host,
        plan: encodePayload(payload),
        status: "running",
        startedAt: now,
        finishedAt: undefined
      },
      payload.vms.map((v) => ({
        vm: v.vm,
        source: v.transfer.source,
        destination: v.reserve.host,
        devices: v.reserve.devices,
        bytes: fleet.vms.find((f) => f.name === v.vm)?.bytes ?? 0
      }))
    )
    if (record.id === id) return { payload, resumed: false }
    const stored = decodePayload(record.plan)
    if (Result.isFailure(stored))
      return yield* Effect.die(new Error(`evacuation ${record.id}: its stored plan cannot be read`))
    return { payload: stored.success, resumed: true }
  })

/** Runs (or joins, or reads back) the evacuation's workflow until it ends. */
export const run = (payload: EvacuateHostPayload) => EvacuateHost.execute(payload)

/** The journal key of each VM of an evacuation (for inspecting its journal). */
export const vmKeys = (payload: EvacuateHostPayload): ReadonlyArray<string> =>
  payload.vms.map((v) => vmKeyOf(payload.evacuation, v.vm))
