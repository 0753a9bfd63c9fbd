import type { FleetLane, FleetTimelineInput } from "@lockstep/timeline"
import { Effect } from "effect"
import type * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import * as FleetStore from "./FleetStore.js"

/**
 * What an evacuation did, read back from the fleet's database: every VM's row and phases, the
 * makespan, and the timeline picture's input. Works while it runs (progress, `status`) and
 * after (the final report), from any process that can read the database.
 */

/** An evacuation as recorded. */
export interface EvacuationView {
  readonly evacuation: FleetStore.EvacuationRecord
  readonly vms: ReadonlyArray<FleetStore.VmRecord>
  readonly phases: ReadonlyArray<FleetStore.PhaseRecord>
  /** From the evacuation's start to its last VM's end (or now, while it runs), in ms. */
  readonly makespanMs: number
}

/** Reads an evacuation (the newest when `id` is not given); `undefined` when there is none. */
export const view = (
  id?: string | undefined
): Effect.Effect<EvacuationView | undefined, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const all = yield* FleetStore.evacuations
    const evacuation = id === undefined ? all[0] : all.find((e) => e.id === id)
    if (evacuation === undefined) return undefined
    const vms = yield* FleetStore.vmsOf(evacuation.id)
    const phases = yield* FleetStore.phasesOf(evacuation.id)
    const ends = vms.map((v) => v.finishedAt ?? Date.now())
    const makespanMs = (evacuation.finishedAt ?? Math.max(Date.now(), ...ends)) - evacuation.startedAt
    return { evacuation, vms, phases, makespanMs }
  })

const downtimePhases = new Set(["switchover", "drain", "validate", "commit", "resume"])

/** The downtime window of a VM's last attempt: from its switchover's start to its resume's end. */
const downtimeOf = (phases: ReadonlyArray<FleetStore.PhaseRecord>): { from: number; to: number } | undefined => {
  const last = Math.max(-1, ...phases.filter((p) => p.phase === "switchover").map((p) => p.attempt))
  const window = phases.filter((p) => p.attempt === last && downtimePhases.has(p.phase))
  const start = window.find((p) => p.phase === "switchover")
  const resume = window.find((p) => p.phase === "resume")
  return start === undefined || resume?.endedAt === undefined
    ? undefined
    : { from: start.startedAt, to: resume.endedAt }
}

/** The timeline picture's input: a lane per VM in start order. */
export const timeline = (v: EvacuationView): FleetTimelineInput => {
  const lanes = v.vms.map((vm): FleetLane => {
    const phases = v.phases.filter((p) => p.vm === vm.vm)
    const downtime = vm.status === "migrated" ? downtimeOf(phases) : undefined
    return {
      vm: vm.vm,
      detail: `→ ${vm.destination}`,
      outcome:
        vm.status === "migrated" || vm.status === "rolled-back"
          ? vm.status
          : vm.status === "pending"
            ? "pending"
            : "running",
      phases: phases.map((p) => ({ phase: p.phase, attempt: p.attempt, from: p.startedAt, to: p.endedAt })),
      ...(downtime === undefined ? {} : { downtime })
    }
  })
  const ends = v.phases.map((p) => p.endedAt ?? p.startedAt)
  const end = Math.max(v.evacuation.startedAt + v.makespanMs, ...ends)
  const migrated = v.vms.filter((x) => x.status === "migrated").length
  return {
    title: `Evacuation of ${v.evacuation.host} (${v.evacuation.id}): ${migrated} of ${v.vms.length} VMs migrated in ${(v.makespanMs / 1000).toFixed(1)} s`,
    start: v.evacuation.startedAt,
    end,
    lanes
  }
}
