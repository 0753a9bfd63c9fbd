import { Effect, Schema } from "effect"
import * as Activity from "effect/workflow/Activity"
import * as Workflow from "effect/workflow/Workflow"
import * as FleetStore from "./FleetStore.js"
import { MigrateVm } from "./MigrateVm.js"

/**
 * Draining a host as a durable workflow: every VM's `MigrateVm` (a child workflow), started
 * in the schedule's order with at most `concurrency` running at once (`Schedule`), each VM's
 * outcome collected whatever the others do. A restart replays it: children already finished
 * answer from storage, running ones are joined, the rest start.
 */

/** One VM's end in an evacuation. */
export const VmOutcome = Schema.Struct({
  vm: Schema.String,
  destination: Schema.String,
  migrated: Schema.Boolean,
  downtimeMs: Schema.optionalKey(Schema.Number),
  attempts: Schema.optionalKey(Schema.Number),
  /** Why it was not migrated, or how an interrupted attempt was settled. */
  reason: Schema.optionalKey(Schema.String),
  /** Not migrated: whether its source runs (every device RUNNING). */
  recovered: Schema.optionalKey(Schema.Boolean)
})
export type VmOutcome = typeof VmOutcome.Type

/** The evacuation's report. */
export const EvacuationReport = Schema.Struct({
  evacuation: Schema.String,
  host: Schema.String,
  vms: Schema.Array(VmOutcome)
})
export type EvacuationReport = typeof EvacuationReport.Type

/** The workflow. */
export const EvacuateHost = Workflow.make("Fleet/EvacuateHost", {
  payload: {
    evacuation: Schema.String,
    host: Schema.String,
    concurrency: Schema.Int,
    /** In start order. */
    vms: Schema.Array(MigrateVm.payloadSchema)
  },
  success: EvacuationReport,
  idempotencyKey: (p) => p.evacuation
})

/** The payload of an evacuation. */
export type EvacuateHostPayload = typeof EvacuateHost.payloadSchema.Type

/** The workflow's implementation (its children's: `MigrateVm.layer`). */
export const layer = EvacuateHost.toLayer((p) =>
  Effect.gen(function* () {
    const vms = yield* Effect.forEach(
      p.vms,
      // Only the child's typed failure is an outcome: a waiting parent is suspended by an
      // interrupt, which must pass through.
      (payload) =>
        MigrateVm.execute(payload).pipe(
          Effect.map(
            (v): VmOutcome => ({
              vm: v.vm,
              destination: v.destination,
              migrated: true,
              ...(v.downtimeMs === undefined ? {} : { downtimeMs: v.downtimeMs }),
              attempts: v.attempts,
              ...(v.settled === undefined ? {} : { reason: v.settled })
            })
          ),
          Effect.catchReason(
            "FleetError",
            "VmNotMigrated",
            (e) =>
              Effect.succeed<VmOutcome>({
                vm: e.vm,
                destination: payload.reserve.host,
                migrated: false,
                reason: e.reason,
                recovered: e.recovered
              }),
            // The workflow fails only with `VmNotMigrated`; any other reason is reported as a VM
            // that did not move and whose source was not seen running again.
            (other) =>
              Effect.succeed<VmOutcome>({
                vm: payload.transfer.vm,
                destination: payload.reserve.host,
                migrated: false,
                reason: other.message,
                recovered: false
              })
          )
        ),
      { concurrency: Math.max(1, p.concurrency) }
    )
    yield* Activity.make({
      name: "Finish",
      execute: Effect.flatMap(
        Effect.clockWith((c) => c.currentTimeMillis),
        (at) => FleetStore.finishEvacuation(p.evacuation, at)
      ).pipe(Effect.orDie)
    })
    return { evacuation: p.evacuation, host: p.host, vms } satisfies EvacuationReport
  })
)
