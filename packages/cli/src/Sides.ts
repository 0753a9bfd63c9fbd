import { decodeGroup, type GroupRuntime, Migratability, reportedStates, stop } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { NotMigratable } from "@lockstep/migration"
import type { SimulatedGroup } from "@lockstep/sim"
import { attachVfioDevices, hasVfioDevice, namesVfioDevice, type VfioDevice } from "@lockstep/vfio"
import { Effect, type Scope } from "effect"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { formatRefusal } from "./Refusal.js"
import type { Role, Scenario } from "./Scenario.js"
import { simulateSide, violationsOf } from "./SimulatedSide.js"

/**
 * One side of a migration as the CLI runs it: a simulated group (with its DMA fabric), or a
 * group of devices bound to kernel VFIO drivers.
 */
export type Side =
  | { readonly _tag: "Simulated"; readonly runtime: SimulatedGroup }
  | { readonly _tag: "Kernel"; readonly runtime: GroupRuntime; readonly devices: ReadonlyMap<string, VfioDevice> }

/**
 * The states a kernel device may be found in before a migration touches it: a source device
 * runs; a destination device runs, or waits in STOP where a failed migration parked it.
 */
const startStates: Readonly<Record<Role, ReadonlyArray<State>>> = {
  source: ["RUNNING"],
  destination: ["RUNNING", "STOP"]
}

const operationFailed = (text: string): CliFailure => new CliFailure({ text, exitCode: 1 })

const devicesOf = (doc: unknown): ReadonlyArray<unknown> =>
  typeof doc === "object" && doc !== null && "devices" in doc && Array.isArray(doc.devices) ? doc.devices : []

/**
 * Opens the kernel devices of one side: every device must name one (`"vfio": {…}`); each is
 * opened and bound, its flags read from the kernel, and its state checked before anything moves
 * (a device held by another process, or left in another state by a crashed one, is refused
 * naming it). A destination is then parked in STOP, as a simulated one is.
 */
const openKernelSide = (scenario: Scenario, role: Role): Effect.Effect<Side, CliFailure, Scope.Scope> =>
  Effect.gen(function* () {
    const doc = scenario.documents[role]
    const where = `${scenario.file} (${role})`
    const others = devicesOf(doc).filter((d) => !namesVfioDevice(d))
    if (others.length > 0)
      return yield* invalidInput(
        `${where}: a group either names a kernel device ("vfio") for every device or for none; mixing kernel and simulated devices is not supported`
      )
    const attached = yield* attachVfioDevices(doc, { startStates: startStates[role] }).pipe(
      Effect.mapError((e) =>
        e._tag === "VfioDeviceInvalid" ? invalidInput(`${where}: ${e.message}`) : operationFailed(e.message)
      )
    )
    const group = yield* decodeGroup(attached.document).pipe(
      Effect.mapError((e) => invalidInput(`${where}: ${e.message}`))
    )
    // Migratable or not is known only now, with the flags the kernel reported: refuse before parking anything.
    const report = Migratability.check(group)
    if (!report.migratable)
      return yield* operationFailed(
        formatRefusal(scenario, group, new NotMigratable({ side: role, blockers: report.blockers }))
      )
    const runtime: GroupRuntime = { group, devices: attached.devices }
    if (role === "destination")
      yield* stop(runtime).pipe(
        Effect.mapError((e) => operationFailed(`the destination group could not be parked in STOP: ${e.message}`))
      )
    return { _tag: "Kernel", runtime, devices: attached.devices } as const
  })

/** The devices of one side of a scenario: kernel devices where the scenario names them, else simulated ones. */
export const openSide = (scenario: Scenario, role: Role): Effect.Effect<Side, CliFailure, Scope.Scope> =>
  hasVfioDevice(scenario.documents[role])
    ? openKernelSide(scenario, role)
    : Effect.map(simulateSide(scenario, role), (runtime) => ({ _tag: "Simulated", runtime }) as const)

/** Every device's state as it reports it now (`UNKNOWN` where it cannot), as one JSON-ready record. */
/** P2P violations the side's fabric saw; `undefined` for kernel devices (no fabric watches them). */
export const violationsOfSide = (side: Side): Effect.Effect<number | undefined> =>
  side._tag === "Simulated" ? violationsOf(side.runtime) : Effect.succeed(undefined)

export const sideStates = (side: Side): Effect.Effect<Record<string, State | "UNKNOWN">> => reportedStates(side.runtime)
