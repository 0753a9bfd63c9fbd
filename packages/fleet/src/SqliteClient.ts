import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite"
import { Effect, Layer, type Scope, Semaphore, Stream } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as SqlClient from "effect/sql/SqlClient"
import type * as SqlConnection from "effect/sql/SqlConnection"
import * as SqlError from "effect/sql/SqlError"
import * as Statement from "effect/sql/Statement"

/**
 * An `effect/sql` client over Node's built-in SQLite (`node:sqlite`, `DatabaseSync`): one
 * connection shared through a semaphore, as SQLite wants. It is what the embedded fleet engine
 * stores its workflows in, so it needs nothing but Node (22.13 or newer, where `node:sqlite`
 * needs no flag). Only APIs present since 22.13 are used.
 *
 * Why not `@effect/sql-sqlite-node`: its only 4.x release is a beta built for the 4.0 betas
 * (`effect/unstable/...` imports), which fails to load with effect 4.1.5; its 0.x line is for
 * Effect 3 and needs the native `better-sqlite3`.
 */

/** Options of the client. */
export interface SqliteOptions {
  /** The database file, or `:memory:`. */
  readonly filename: string
  /** How long a statement waits for a lock held by another process, in ms. Default 5000. */
  readonly busyTimeoutMs?: number | undefined
  /** Prepared statements kept for reuse. Default 256. */
  readonly statementCacheSize?: number | undefined
  /**
   * SQLite's `synchronous` setting in WAL mode. `FULL` (default): a commit is on disk when it
   * returns (an fsync each, about 5 ms here, during which the process does nothing else: node:sqlite
   * is synchronous). `NORMAL`: a commit is in the WAL file when it returns, so it survives the
   * process being killed at any point, but an OS crash or power loss may lose the last ones.
   */
  readonly synchronous?: "FULL" | "NORMAL" | undefined
}

/** node:sqlite binds null, numbers, bigints, strings and bytes; everything else is converted here. */
const bindable = (value: unknown): SQLInputValue => {
  if (value === undefined || value === null) return null
  if (typeof value === "boolean") return value ? 1 : 0
  if (typeof value === "number" || typeof value === "bigint" || typeof value === "string") return value
  if (value instanceof Uint8Array) return value
  if (value instanceof Date) return value.toISOString()
  return JSON.stringify(value)
}

/**
 * node:sqlite throws `code: "ERR_SQLITE_ERROR"` with SQLite's extended result code in
 * `errcode`; effect/sql classifies by a numeric `code` (or `errno`), so that is handed over.
 */
const classifiable = (cause: unknown): unknown =>
  typeof cause === "object" && cause !== null && "errcode" in cause && typeof cause.errcode === "number"
    ? { code: cause.errcode, errno: cause.errcode, message: "message" in cause ? cause.message : undefined, cause }
    : cause

const sqlError = (cause: unknown, message: string, operation: string): SqlError.SqlError =>
  new SqlError.SqlError({
    reason: SqlError.classifySqliteError(classifiable(cause), {
      message: `${message}: ${cause instanceof Error ? cause.message : String(cause)}`,
      operation
    })
  })

/** A small LRU of prepared statements: SQL text → statement. */
class StatementCache {
  private readonly statements = new Map<string, StatementSync>()
  constructor(
    private readonly db: DatabaseSync,
    private readonly capacity: number
  ) {}

  get(sql: string): StatementSync {
    const cached = this.statements.get(sql)
    if (cached !== undefined) {
      this.statements.delete(sql)
      this.statements.set(sql, cached)
      return cached
    }
    const statement = this.db.prepare(sql)
    this.statements.set(sql, statement)
    if (this.statements.size > this.capacity) {
      const oldest = this.statements.keys().next().value
      if (oldest !== undefined) this.statements.delete(oldest)
    }
    return statement
  }
}

const makeConnection = (db: DatabaseSync, cache: StatementCache): SqlConnection.Connection => {
  const rows = (statement: StatementSync, params: ReadonlyArray<unknown>) =>
    statement.all(...params.map(bindable)) as ReadonlyArray<Record<string, unknown>>
  const run = <A>(operation: string, f: () => A): Effect.Effect<A, SqlError.SqlError> =>
    Effect.try({ try: f, catch: (cause) => sqlError(cause, `SQLite ${operation} failed`, operation) })
  const transformed = (
    result: ReadonlyArray<Record<string, unknown>>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) => (transformRows === undefined ? result : transformRows(result))
  // Column order of a row object is the SELECT's order; columns with the same name collapse.
  const values = (result: ReadonlyArray<Record<string, unknown>>) => result.map((row) => Object.values(row))
  return {
    execute: (sql, params, transformRows) =>
      run("execute", () => transformed(rows(cache.get(sql), params), transformRows)),
    executeRaw: (sql, params) => run("execute", () => cache.get(sql).run(...params.map(bindable))),
    executeStream: (sql, params, transformRows) =>
      Stream.unwrap(
        Effect.map(
          run("execute", () => transformed(rows(cache.get(sql), params), transformRows)),
          Stream.fromIterable
        )
      ),
    executeValues: (sql, params) => run("execute", () => values(rows(cache.get(sql), params))),
    executeValuesUnprepared: (sql, params) => run("execute", () => values(rows(db.prepare(sql), params))),
    executeUnprepared: (sql, params, transformRows) =>
      run("execute", () => {
        // Transaction control and DDL may hold several statements; only `exec` runs them all.
        if (params.length === 0 && transformRows === undefined && !/\breturning\b|^\s*select\b/i.test(sql)) {
          db.exec(sql)
          return []
        }
        return transformed(rows(db.prepare(sql), params), transformRows)
      })
  }
}

/**
 * Opens `filename` (WAL journal, `busy_timeout`, foreign keys on) and answers a `SqlClient`
 * over it; the database is closed when the scope closes.
 */
export const make = (
  options: SqliteOptions
): Effect.Effect<SqlClient.SqlClient, SqlError.SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new DatabaseSync(options.filename),
        catch: (cause) => sqlError(cause, `cannot open the SQLite database ${options.filename}`, "open")
      }),
      (db) => Effect.sync(() => db.close())
    )
    const busy = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))
    yield* Effect.try({
      try: () =>
        db.exec(
          `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${options.synchronous ?? "FULL"}; PRAGMA busy_timeout = ${busy}; PRAGMA foreign_keys = ON;`
        ),
      catch: (cause) => sqlError(cause, `cannot configure the SQLite database ${options.filename}`, "open")
    })
    const connection = makeConnection(db, new StatementCache(db, Math.max(1, options.statementCacheSize ?? 256)))
    const acquirers = SqlClient.makeSqliteAcquirers({
      connection: Effect.succeed(connection),
      semaphore: yield* Semaphore.make(1)
    })
    return yield* SqlClient.make({
      acquirer: acquirers.acquirer,
      borrower: acquirers.borrower,
      transactionAcquirer: acquirers.transactionAcquirer,
      onCommitFailure: acquirers.onCommitFailure,
      compiler: Statement.makeCompilerSqlite(),
      driver: "node:sqlite",
      spanAttributes: [["db.system.name", "sqlite"]],
      prepareTransactionControls: true
    })
  })

/** A `SqlClient` layer over `node:sqlite` (Reactivity included). */
export const layer = (options: SqliteOptions): Layer.Layer<SqlClient.SqlClient, SqlError.SqlError> =>
  Layer.effect(SqlClient.SqlClient, make(options)).pipe(Layer.provide(Reactivity.layer))
