import { Clock, Effect, Exit, Schema } from "effect"
import * as ClusterSchema from "effect/cluster/ClusterSchema"
import * as Entity from "effect/cluster/Entity"
import * as Rpc from "effect/rpc/Rpc"
import * as SqlClient from "effect/sql/SqlClient"
import { JournalDatabase } from "./FencedJournal.js"
import { FleetError } from "./FleetError.js"
import * as FleetStore from "./FleetStore.js"
import * as HostControl from "./HostControl.js"
import { NicBudget } from "./NicBudget.js"
import { TransferOutcome, TransferRequest, transfer, vmKeyOf } from "./Switchover.js"
import { attach } from "./VmDevices.js"

/**
 * The agent of a host in the cluster: one entity per host (its id is the host's name), which
 * does everything that touches the host's devices. Its messages are persisted, each with a
 * primary key per VM and step, so a step is carried out once however often it is sent, and a
 * step cut short by a crash is delivered again to whichever runner owns the host's shard next
 * (which is why every step is idempotent).
 *
 * - `Reserve` (destination): counts the devices against the host's capacity, has the host make
 *   the VM's shell (its devices parked in STOP) and checks that the shell's devices match the
 *   VM's (a vfio-user server at each device id's socket, reporting the flags the VM's devices
 *   declare) — all before the source is touched. A refused reservation holds nothing.
 * - `Release` (destination): drops the reservation and the shell.
 * - `Transfer` (source): the switchover (`Switchover.transfer`).
 * - `Settle` (source): the compensation: settles the VM without migrating it again (rolls the
 *   source back, unless the journal says COMMIT: then it rolls forward, never back).
 */

/** What a destination reserves for a VM. */
export const ReserveRequest = Schema.Struct({
  evacuation: Schema.String,
  vm: Schema.String,
  host: Schema.String,
  devices: Schema.Int,
  capacity: Schema.Int,
  /** Devices of the VMs living on the host. */
  residentDevices: Schema.Int,
  document: Schema.Unknown,
  /** The vfio-user socket template of the VM's devices on this host. */
  sockets: Schema.String,
  /** The host's control socket, when Lockstep simulates it (the shell is made there). */
  control: Schema.optionalKey(Schema.String)
})
export type ReserveRequest = typeof ReserveRequest.Type

const ReleaseRequest = Schema.Struct({
  evacuation: Schema.String,
  vm: Schema.String,
  control: Schema.optionalKey(Schema.String)
})

const key = (step: string) => (p: { readonly evacuation: string; readonly vm: string }) =>
  `${vmKeyOf(p.evacuation, p.vm)}/${step}`

const Reserve = Rpc.make("Reserve", {
  payload: ReserveRequest.fields,
  error: FleetError,
  primaryKey: key("reserve")
})
const Release = Rpc.make("Release", { payload: ReleaseRequest.fields, primaryKey: key("release") })
const Transfer = Rpc.make("Transfer", {
  payload: TransferRequest.fields,
  success: TransferOutcome,
  primaryKey: key("transfer")
})
const Settle = Rpc.make("Settle", {
  payload: TransferRequest.fields,
  success: TransferOutcome,
  primaryKey: key("settle")
})

/** The agent entity of a host. */
export const HostAgent = Entity.make("Fleet/HostAgent", [Reserve, Release, Transfer, Settle]).annotateRpcs(
  ClusterSchema.Persisted,
  true
)

/** Checks that the shell's devices answer at their ids' sockets with the VM's flags, within a few seconds. */
const checkShell = (request: ReserveRequest) =>
  Effect.scoped(Effect.flatMap(Effect.scope, (scope) => attach(request.document, request.sockets, scope, 5_000))).pipe(
    Effect.mapError((e) => FleetError.reservationRefused({ vm: request.vm, host: request.host, reason: e.message }))
  )

const reserve = (request: ReserveRequest) =>
  Effect.gen(function* () {
    const refused = (reason: string) => FleetError.reservationRefused({ vm: request.vm, host: request.host, reason })
    const at = yield* Clock.currentTimeMillis
    yield* FleetStore.updateVm(request.evacuation, request.vm, { status: "reserving", phase: "reserve" }, at).pipe(
      Effect.orDie
    )
    const free = yield* FleetStore.reserve({
      vmKey: vmKeyOf(request.evacuation, request.vm),
      evacuation: request.evacuation,
      host: request.host,
      devices: request.devices,
      capacity: request.capacity,
      residentDevices: request.residentDevices
    }).pipe(Effect.orDie)
    if (free !== undefined) return yield* refused(`${free} free devices, ${request.devices} needed`)
    const shell =
      request.control === undefined
        ? Effect.void
        : HostControl.call(request.control, { op: "provision", vm: request.vm, document: request.document }).pipe(
            Effect.mapError((e) => refused(`its host could not make the VM's devices: ${e.reason}`))
          )
    // A refused reservation holds nothing: the workflow compensates only steps that succeeded.
    yield* Effect.andThen(shell, checkShell(request)).pipe(
      Effect.tapError(() =>
        release({
          evacuation: request.evacuation,
          vm: request.vm,
          ...(request.control === undefined ? {} : { control: request.control })
        })
      )
    )
  })

const release = (request: typeof ReleaseRequest.Type) =>
  Effect.gen(function* () {
    if (request.control !== undefined) {
      const dropped = yield* Effect.exit(HostControl.call(request.control, { op: "release", vm: request.vm }))
      // A shell that runs holds a migrated VM: it keeps its reservation.
      if (Exit.isFailure(dropped)) return
    }
    yield* FleetStore.release(vmKeyOf(request.evacuation, request.vm)).pipe(Effect.orDie)
  })

/** The agent's handlers; they run wherever the host's shard is. */
export const layer = HostAgent.toLayer(
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const journal = yield* JournalDatabase
    const budget = yield* NicBudget
    const provide = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient | JournalDatabase | NicBudget>) =>
      effect.pipe(
        Effect.provideService(SqlClient.SqlClient, sql),
        Effect.provideService(JournalDatabase, journal),
        Effect.provideService(NicBudget, budget)
      )
    return HostAgent.of({
      Reserve: (envelope) => provide(reserve(envelope.payload)),
      Release: (envelope) => provide(release(envelope.payload)),
      Transfer: (envelope) => provide(transfer(envelope.payload)),
      Settle: (envelope) => provide(transfer({ ...envelope.payload, maxAttempts: 0 }))
    })
  }),
  // Every VM of a host migrates in its own request; none waits for another.
  { concurrency: "unbounded", mailboxCapacity: "unbounded" }
)
