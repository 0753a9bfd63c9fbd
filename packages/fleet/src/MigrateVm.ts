import { Effect, Schedule, Schema } from "effect"
import {
  AlreadyProcessingMessage,
  EntityNotAssignedToRunner,
  MailboxFull,
  PersistenceError
} from "effect/cluster/ClusterError"
import * as Activity from "effect/workflow/Activity"
import * as Workflow from "effect/workflow/Workflow"
import { FleetError } from "./FleetError.js"
import * as FleetStore from "./FleetStore.js"
import { HostAgent, ReserveRequest } from "./HostAgent.js"
import { MigratedFields, TransferOutcome, TransferRequest } from "./Switchover.js"

/**
 * One VM's migration as a durable workflow: reserve the destination (capacity, the shell's
 * devices, their compatibility) before the source is touched → the switchover, which
 * pre-copies, switches over and commits through the journal (run by the source host's agent)
 * → record the outcome. Each step is an activity: once it has completed, its result is replayed
 * from storage and never run again, so nothing runs twice past the commit.
 *
 * Compensation: if the migration does not happen, the switchover is settled once more by the
 * source's agent (the source back to RUNNING unless the journal says COMMIT) and the
 * reservation is released, in that order.
 */

/** A migrated VM. */
export const VmMigrated = Schema.Struct({ vm: Schema.String, destination: Schema.String, ...MigratedFields })
export type VmMigrated = typeof VmMigrated.Type

/** The workflow. */
export const MigrateVm = Workflow.make("Fleet/MigrateVm", {
  payload: {
    evacuation: Schema.String,
    vm: Schema.String,
    reserve: ReserveRequest,
    transfer: TransferRequest
  },
  success: VmMigrated,
  error: FleetError,
  idempotencyKey: (p) => `${p.evacuation}/${p.vm}`
})

/** The payload of one VM's migration. */
export type MigrateVmPayload = typeof MigrateVm.payloadSchema.Type

/** What the cluster answers when a message could not be handled yet. */
type NotYet = MailboxFull | AlreadyProcessingMessage | PersistenceError | EntityNotAssignedToRunner
const notYet = (e: unknown): e is NotYet =>
  e instanceof MailboxFull ||
  e instanceof AlreadyProcessingMessage ||
  e instanceof PersistenceError ||
  e instanceof EntityNotAssignedToRunner

/**
 * Asks a host's agent, again while the cluster says the message could not be handled yet (a
 * full mailbox, a shard between runners, the database briefly unavailable): the message is
 * persisted with its primary key, so asking again never does the step twice. If that lasts a
 * minute, the workflow dies here and is replayed later.
 */
const ask = <A, E, R>(effect: Effect.Effect<A, E | NotYet, R>): Effect.Effect<A, Exclude<E, NotYet>, R> =>
  effect.pipe(
    Effect.retry({ while: notYet, schedule: Schedule.spaced(250), times: 240 }),
    Effect.catchIf(notYet, (e) => Effect.die(e))
    // catchIf's refinement does not narrow a generic union: the cast states what it removed.
  ) as Effect.Effect<A, Exclude<E, NotYet>, R>

const record = (name: string, evacuation: string, vm: string, update: FleetStore.VmUpdate) =>
  Activity.make({
    name,
    execute: Effect.flatMap(
      Effect.clockWith((c) => c.currentTimeMillis),
      (at) => FleetStore.updateVm(evacuation, vm, update, at)
    ).pipe(Effect.orDie)
  })

/** The workflow's implementation; needs the agents (`HostAgent.layer`) somewhere in the cluster. */
export const layer = MigrateVm.toLayer((p) =>
  Effect.gen(function* () {
    const agents = yield* HostAgent.client
    const source = agents(p.transfer.source)
    const destination = agents(p.reserve.host)
    const { evacuation, vm } = p

    const reserved = yield* Activity.make({
      name: "Reserve",
      error: FleetError,
      execute: ask(destination.Reserve(p.reserve))
    }).pipe(
      MigrateVm.withCompensation(() =>
        Activity.make({
          name: "Release",
          execute: ask(
            destination.Release({
              evacuation,
              vm,
              ...(p.reserve.control === undefined ? {} : { control: p.reserve.control })
            })
          )
        })
      ),
      Effect.result
    )
    if (reserved._tag === "Failure") {
      yield* record("MarkRefused", evacuation, vm, {
        status: "rolled-back",
        reason: reserved.failure.message,
        finishedAt: Date.now()
      })
      return yield* FleetError.vmNotMigrated({ vm, reason: reserved.failure.message, recovered: true })
    }

    const outcome = yield* Activity.make({
      name: "Transfer",
      success: TransferOutcome,
      execute: ask(source.Transfer(p.transfer))
    }).pipe(
      MigrateVm.withCompensation(() =>
        Activity.make({ name: "Settle", success: TransferOutcome, execute: ask(source.Settle(p.transfer)) }).pipe(
          Effect.asVoid
        )
      )
    )
    if (outcome._tag === "RolledBack") {
      yield* record("MarkRolledBack", evacuation, vm, {
        status: "rolled-back",
        reason: outcome.reason,
        finishedAt: Date.now()
      })
      return yield* FleetError.vmNotMigrated({ vm, reason: outcome.reason, recovered: outcome.recovered })
    }
    yield* record("MarkMigrated", evacuation, vm, {
      status: "migrated",
      phase: "done",
      ...(outcome.downtimeMs === undefined ? {} : { downtimeMs: outcome.downtimeMs }),
      finishedAt: Date.now(),
      ...(outcome.settled === undefined ? {} : { reason: outcome.settled })
    })
    const { _tag, ...migrated } = outcome
    return { vm, destination: p.reserve.host, ...migrated } satisfies VmMigrated
  })
)
