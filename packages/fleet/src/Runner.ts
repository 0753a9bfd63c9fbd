import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { PgClient } from "@effect/sql-pg"
import { Context, Data, Effect, Layer, Redacted } from "effect"
import type * as Sharding from "effect/cluster/Sharding"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as SqlClient from "effect/sql/SqlClient"
import type * as WorkflowEngine from "effect/workflow/WorkflowEngine"
import * as Engine from "./Engine.js"
import * as EvacuateHost from "./EvacuateHost.js"
import * as FencedJournal from "./FencedJournal.js"
import { JournalDatabase } from "./FencedJournal.js"
import * as FleetStore from "./FleetStore.js"
import * as HostAgent from "./HostAgent.js"
import * as MigrateVm from "./MigrateVm.js"
import * as NicBudget from "./NicBudget.js"
import * as SqliteClient from "./SqliteClient.js"
import { databasePath, journalPath } from "./StateDirectory.js"

/**
 * A fleet runner: the durable engine plus everything the fleet runs on it (the `MigrateVm` and
 * `EvacuateHost` workflows, the host agents, the NIC budget, the fleet's tables).
 * - `embedded`: one process, SQLite in the state directory, nothing to set up.
 * - `postgres`: one of several runners sharing a Postgres database; the hosts' shards and the
 *   workflows are spread across them, and a runner that dies loses its shards to the others.
 */

/** What a runner provides. */
export type Services =
  | WorkflowEngine.WorkflowEngine
  | Sharding.Sharding
  | SqlClient.SqlClient
  | JournalDatabase
  | NicBudget.NicBudget

/** The storage could not be opened (or the state directory is in use): says which and why. */
export class RunnerUnavailable extends Data.TaggedError("RunnerUnavailable")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const fleet = Layer.mergeAll(MigrateVm.layer, EvacuateHost.layer, HostAgent.layer)

const tables = Layer.effectDiscard(
  Effect.mapError(
    Effect.andThen(FleetStore.migrate, FencedJournal.migrate),
    (e) => new RunnerUnavailable({ reason: `cannot create the fleet's tables: ${e.message}` })
  )
)

const withStorage = (
  sql: Layer.Layer<SqlClient.SqlClient | JournalDatabase, RunnerUnavailable>,
  options: Engine.RunnerOptions
): Layer.Layer<Services, RunnerUnavailable> =>
  fleet.pipe(
    Layer.provideMerge(Engine.layer(options)),
    Layer.provideMerge(NicBudget.layer),
    Layer.provideMerge(tables),
    Layer.provideMerge(sql)
  )

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return !(cause instanceof Error && "code" in cause && cause.code === "ESRCH")
  }
}

/**
 * Holds the state directory for this process (`runner.pid`): the embedded runner has a fixed
 * identity in storage, so two processes on one directory would both run its workflows. A
 * lock left by a dead process is taken over.
 */
const stateLock = (state: string) =>
  Layer.effectDiscard(
    Effect.acquireRelease(
      Effect.try({
        try: () => {
          mkdirSync(resolve(state), { recursive: true })
          const path = join(resolve(state), "runner.pid")
          for (;;) {
            try {
              writeFileSync(path, String(process.pid), { flag: "wx" })
              return path
            } catch (cause) {
              if (!(cause instanceof Error && "code" in cause && cause.code === "EEXIST")) throw cause
              const holder = Number.parseInt(readFileSync(path, "utf8"), 10)
              if (Number.isSafeInteger(holder) && holder !== process.pid && alive(holder))
                throw new Error(
                  `another lockstep fleet process (pid ${holder}) is running on this state directory; wait for it or stop it`
                )
              rmSync(path, { force: true })
            }
          }
        },
        catch: (cause) => new RunnerUnavailable({ reason: cause instanceof Error ? cause.message : String(cause) })
      }),
      (path) => Effect.sync(() => rmSync(path, { force: true }))
    )
  )

const openSqlite = (filename: string, synchronous: "FULL" | "NORMAL") =>
  Effect.mapError(
    SqliteClient.make({ filename, synchronous }),
    (e) => new RunnerUnavailable({ reason: `cannot open the fleet database: ${e.message}` })
  )

/**
 * The embedded runner's two SQLite files: the workflows' (`fleet.sqlite`, synced lazily: a
 * process crash loses nothing) and the journal's (`journal.sqlite`, synced on every commit).
 */
const sqlite = (state: string): Layer.Layer<SqlClient.SqlClient | JournalDatabase, RunnerUnavailable> =>
  Layer.merge(
    Layer.effect(SqlClient.SqlClient, openSqlite(databasePath(state), "NORMAL")),
    Layer.effect(JournalDatabase, openSqlite(journalPath(state), "FULL"))
  ).pipe(Layer.provide(Reactivity.layer))

/** A Postgres database serves as both the workflows' storage and the journal's. */
const pg = (url: string, name: string): Layer.Layer<SqlClient.SqlClient | JournalDatabase, RunnerUnavailable> =>
  Layer.effectContext(
    Effect.map(
      Effect.mapError(
        PgClient.make({ url: Redacted.make(url), applicationName: name }),
        (e) => new RunnerUnavailable({ reason: `cannot reach Postgres: ${e.message}` })
      ),
      (client) => Context.make(SqlClient.SqlClient, client).pipe(Context.add(JournalDatabase, client))
    )
  ).pipe(Layer.provide(Reactivity.layer))

/** The embedded runner: SQLite in `state` (`fleet.sqlite`), one process, restartable at any point. */
export const embedded = (state: string): Layer.Layer<Services, RunnerUnavailable> =>
  withStorage(sqlite(state).pipe(Layer.provideMerge(stateLock(state))), {
    name: "embedded",
    timings: Engine.embeddedTimings
  })

/** Options of a runner sharing Postgres. */
export interface PostgresRunnerOptions {
  /** `postgres://user:password@host:port/database`. */
  readonly url: string
  /** This runner's name: stable across its restarts, unique among the runners. */
  readonly runner: string
  readonly timings?: Engine.EngineTimings | undefined
}

/** A runner sharing a Postgres database with others. */
export const postgres = (options: PostgresRunnerOptions): Layer.Layer<Services, RunnerUnavailable> =>
  withStorage(pg(options.url, `lockstep-fleet-${options.runner}`), {
    name: options.runner,
    timings: options.timings ?? Engine.scaleOutTimings
  })

/** The fleet's databases alone (for `status`), without running anything. */
export const storageOnly = (
  where: { readonly state: string } | { readonly url: string }
): Layer.Layer<SqlClient.SqlClient | JournalDatabase, RunnerUnavailable> =>
  "url" in where ? pg(where.url, "lockstep-fleet-status") : sqlite(where.state)
