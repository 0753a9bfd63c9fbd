import { Effect, Queue, type Scope } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import * as FleetStore from "./FleetStore.js"
import type { MigrationEvent } from "./MigrationPort.js"

/**
 * A VM's progress as its migration goes: phases with their wall-clock times (the fleet
 * timeline), bytes sent, status. Records are queued and written by a fiber of their own, so
 * the migration never waits for the database.
 */

/** One change to record: a VM row update, and a phase that began or ended. */
export interface ProgressRecord extends FleetStore.VmUpdate {
  readonly phaseStart?: string
  readonly phaseEnd?: string
  /** Wall-clock ms. */
  readonly at: number
}

/** Records the progress of attempt `attempt` of `vm`. */
export interface ProgressRecorder {
  readonly mark: (record: ProgressRecord) => void
  /** The source session's events, recorded as phases and bytes. */
  readonly onEvent: (event: MigrationEvent) => void
  /** Waits (at most 5 s) until every record so far is written. */
  readonly flush: Effect.Effect<void>
}

/** A recorder writing to the fleet's database until the scope closes. */
export const recorder = (
  evacuation: string,
  vm: string,
  attempt: number
): Effect.Effect<ProgressRecorder, never, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const records = yield* Queue.unbounded<ProgressRecord>()
    let pending = 0
    const write = Effect.gen(function* () {
      for (;;) {
        const { phaseStart, phaseEnd, at, ...update } = yield* Queue.take(records)
        yield* Effect.gen(function* () {
          if (phaseStart !== undefined) yield* FleetStore.recordPhase(evacuation, vm, attempt, phaseStart, at)
          if (phaseEnd !== undefined) yield* FleetStore.endPhase(evacuation, vm, attempt, phaseEnd, at)
          if (Object.keys(update).length > 0) yield* FleetStore.updateVm(evacuation, vm, update, at)
        }).pipe(Effect.ignore)
        pending -= 1
      }
    }).pipe(Effect.provideService(SqlClient.SqlClient, sql))
    yield* Effect.forkScoped(write)
    let sent = 0
    const mark = (record: ProgressRecord) => {
      pending += 1
      Queue.offerUnsafe(records, record)
    }
    return {
      mark,
      onEvent: (event) => {
        switch (event._tag) {
          case "PhaseStarted":
            if (event.side === "source") mark({ phaseStart: event.phase, phase: event.phase, at: event.at })
            break
          case "PhaseEnded":
            if (event.side === "source") mark({ phaseEnd: event.phase, at: event.at })
            break
          case "RoundDone":
            sent += event.bytes
            mark({ bytesSent: sent, at: event.at })
            break
          case "DeviceDrained":
            if (event.side === "source") {
              sent += event.bytes
              mark({ bytesSent: sent, at: event.at })
            }
            break
        }
      },
      flush: Effect.gen(function* () {
        while (pending > 0) yield* Effect.sleep(2)
      }).pipe(Effect.timeoutOption(5_000), Effect.asVoid)
    } satisfies ProgressRecorder
  })
