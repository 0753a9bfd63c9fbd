import { Clock, Context, Effect, Result } from "effect"
import type * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import {
  type CommitJournal,
  type JournalChange,
  type JournalEntry,
  JournalFailed,
  type JournalOperation,
  type JournalStatus,
  makeJournal
} from "./MigrationPort.js"

/**
 * The commit journal of the fleet's migrations, in the fleet's database, with a fencing epoch.
 *
 * Shard leases are not fences: a runner that lost its shards (a long pause, a partition) does
 * not know it until it next looks, and meanwhile another runner may have taken the same VM's
 * switchover over. So every attempt at a VM's switchover first takes a new epoch
 * (`takeEpoch`: the VM's epoch + 1, atomically), and every write it makes to the journal checks,
 * in the same transaction, that its epoch is still the VM's newest. A superseded attempt's
 * writes fail (`JournalFailed`, "fenced"): it can never record COMMIT after a newer attempt has
 * looked at the VM, and the migration session treats the failure like any journal failure
 * before COMMIT (it rolls back) or after it (it stands).
 *
 * The rules of each entry (`started` → `committed` → `completed`, or `aborted`; the first
 * decision stands) are the migration package's own (`Journal.make`); every change is also
 * appended to `fleet_journal_log`, so tests can check that no VM committed twice.
 *
 * The journal is the authority on who owns a VM, so it is kept in a database of its own
 * (`JournalDatabase`) that may be more durable than the workflows' storage: the embedded runner
 * keeps it in its own SQLite file synced on every commit, while the workflows' file is synced
 * less often (a workflow step lost to an OS crash is replayed, and every step is idempotent
 * because it decides from this journal). Runners sharing Postgres keep it in that database.
 */

/** The database the journal and its fences live in. */
export class JournalDatabase extends Context.Service<JournalDatabase, SqlClient.SqlClient>()(
  "@lockstep/fleet/JournalDatabase"
) {}

/** Creates the journal's tables if they are missing. */
export const migrate: Effect.Effect<void, SqlError, JournalDatabase> = Effect.gen(function* () {
  const sql = yield* JournalDatabase
  yield* sql`CREATE TABLE IF NOT EXISTS fleet_fences (vm_key TEXT PRIMARY KEY, epoch INTEGER NOT NULL)`
  yield* sql`CREATE TABLE IF NOT EXISTS fleet_journal (
    migration TEXT PRIMARY KEY, vm_key TEXT NOT NULL, epoch INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, updated_at BIGINT NOT NULL)`
  yield* sql`CREATE TABLE IF NOT EXISTS fleet_journal_log (
    migration TEXT NOT NULL, status TEXT NOT NULL, vm_key TEXT NOT NULL, epoch INTEGER NOT NULL,
    at BIGINT NOT NULL, PRIMARY KEY (migration, status))`
})

/** Takes the next fencing epoch of `vmKey`; from now on, older epochs' writes fail. */
export const takeEpoch = (vmKey: string): Effect.Effect<number, SqlError, JournalDatabase> =>
  Effect.gen(function* () {
    const sql = yield* JournalDatabase
    const rows = yield* sql<{ epoch: number | bigint }>`INSERT INTO fleet_fences (vm_key, epoch) VALUES (${vmKey}, 1)
      ON CONFLICT (vm_key) DO UPDATE SET epoch = fleet_fences.epoch + 1 RETURNING epoch`
    return Number(rows[0]?.epoch ?? 0)
  })

/** A journal entry with the VM and epoch it was written under. */
export interface FencedEntry extends JournalEntry {
  readonly vmKey: string
  readonly epoch: number
}

/** One change in the journal's history. */
export interface LoggedChange {
  readonly migration: string
  readonly status: JournalStatus
  readonly epoch: number
  readonly at: number
}

const entryOf = (row: Record<string, unknown>): FencedEntry => ({
  migration: String(row.migration),
  status: String(row.status) as JournalStatus,
  updatedAt: Number(row.updated_at),
  ...(row.reason === null || row.reason === undefined ? {} : { reason: String(row.reason) }),
  vmKey: String(row.vm_key),
  epoch: Number(row.epoch)
})

/** Every entry of a VM, oldest first. */
export const entriesOf = (vmKey: string): Effect.Effect<ReadonlyArray<FencedEntry>, SqlError, JournalDatabase> =>
  Effect.gen(function* () {
    const sql = yield* JournalDatabase
    const rows = yield* sql<Record<string, unknown>>`SELECT migration, vm_key, epoch, status, reason, updated_at
      FROM fleet_journal WHERE vm_key = ${vmKey} ORDER BY epoch, updated_at`
    return rows.map(entryOf)
  })

/** Every change of a VM's journal entries, in order. */
export const historyOf = (vmKey: string): Effect.Effect<ReadonlyArray<LoggedChange>, SqlError, JournalDatabase> =>
  Effect.gen(function* () {
    const sql = yield* JournalDatabase
    const rows = yield* sql<Record<string, unknown>>`SELECT migration, status, epoch, at FROM fleet_journal_log
      WHERE vm_key = ${vmKey} ORDER BY at, epoch`
    return rows.map((r) => ({
      migration: String(r.migration),
      status: String(r.status) as JournalStatus,
      epoch: Number(r.epoch),
      at: Number(r.at)
    }))
  })

/**
 * The journal of `vmKey` as seen by the attempt holding `epoch`: reads see every entry of the
 * VM; writes succeed only while `epoch` is the VM's newest.
 */
export const fenced = (sql: SqlClient.SqlClient, vmKey: string, epoch: number): CommitJournal => {
  const location = `the fleet journal of ${vmKey}`
  const failed = (operation: JournalOperation, reason: string) => new JournalFailed({ operation, location, reason })
  const lock = sql.onDialectOrElse({ pg: () => sql.literal("FOR UPDATE"), orElse: () => sql.literal("") })
  const read = (operation: JournalOperation) =>
    entriesOf(vmKey).pipe(
      Effect.provideService(JournalDatabase, sql),
      Effect.mapError((e) => failed(operation, e.message))
    )
  const update = <A>(operation: JournalOperation, migration: string, change: JournalChange<A>) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const outcome = yield* sql
        .withTransaction(
          Effect.gen(function* () {
            const fence = yield* sql<{
              epoch: number | bigint
            }>`SELECT epoch FROM fleet_fences WHERE vm_key = ${vmKey} ${lock}`
            const current = Number(fence[0]?.epoch ?? 0)
            if (current !== epoch)
              return Result.fail(`fenced: this attempt holds epoch ${epoch}, superseded by epoch ${current}`)
            const rows = yield* sql<Record<string, unknown>>`SELECT migration, vm_key, epoch, status, reason, updated_at
            FROM fleet_journal WHERE migration = ${migration}`
            const entry = rows[0] === undefined ? undefined : entryOf(rows[0])
            const changed = change(entry, now)
            if (Result.isFailure(changed)) return Result.fail(changed.failure)
            const [next, value] = changed.success
            if (next !== undefined) {
              yield* sql`INSERT INTO fleet_journal (migration, vm_key, epoch, status, reason, updated_at)
              VALUES (${migration}, ${vmKey}, ${epoch}, ${next.status}, ${next.reason ?? null}, ${next.updatedAt})
              ON CONFLICT (migration) DO UPDATE SET epoch = ${epoch}, status = ${next.status},
                reason = ${next.reason ?? null}, updated_at = ${next.updatedAt}`
              yield* sql`INSERT INTO fleet_journal_log (migration, status, vm_key, epoch, at)
              VALUES (${migration}, ${next.status}, ${vmKey}, ${epoch}, ${next.updatedAt})
              ON CONFLICT (migration, status) DO NOTHING`
            }
            return Result.succeed(value)
          })
        )
        .pipe(Effect.mapError((e) => failed(operation, e.message)))
      if (Result.isFailure(outcome)) return yield* failed(operation, outcome.failure)
      return outcome.success
    })
  return makeJournal(location, read, update)
}
