import { Effect } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

/**
 * The fleet's own records, beside the cluster's tables in the same database (SQLite or
 * Postgres; the SQL here is what both accept):
 * - `fleet_evacuations`: one row per evacuation (its fleet's digest, host, plan, status);
 * - `fleet_vms`: one row per VM of an evacuation: where it goes, its phase, bytes, attempts,
 *   downtime and outcome — what `lockstep fleet status` and the progress display read;
 * - `fleet_phases`: when each phase of each attempt began and ended (the timeline);
 * - `fleet_claims`: the evacuation under way for a fleet (by digest) and host, so that processes
 *   asked to evacuate the same host join one evacuation instead of starting two;
 * - `fleet_reservations`: devices reserved on destinations;
 *
 * The commit journal and its fences are kept apart (`FencedJournal`).
 */

const ddl = [
  `CREATE TABLE IF NOT EXISTS fleet_evacuations (
    id TEXT PRIMARY KEY, fleet TEXT NOT NULL, host TEXT NOT NULL, plan TEXT NOT NULL,
    status TEXT NOT NULL, started_at BIGINT NOT NULL, finished_at BIGINT)`,
  `CREATE TABLE IF NOT EXISTS fleet_vms (
    evacuation TEXT NOT NULL, vm TEXT NOT NULL, ord INTEGER NOT NULL, source TEXT NOT NULL,
    destination TEXT NOT NULL, devices INTEGER NOT NULL, bytes_total BIGINT NOT NULL, status TEXT NOT NULL,
    phase TEXT, bytes_sent BIGINT NOT NULL, attempts INTEGER NOT NULL, downtime_ms DOUBLE PRECISION,
    reason TEXT, started_at BIGINT, finished_at BIGINT, updated_at BIGINT NOT NULL,
    PRIMARY KEY (evacuation, vm))`,
  `CREATE TABLE IF NOT EXISTS fleet_phases (
    evacuation TEXT NOT NULL, vm TEXT NOT NULL, attempt INTEGER NOT NULL, phase TEXT NOT NULL,
    started_at BIGINT NOT NULL, ended_at BIGINT, PRIMARY KEY (evacuation, vm, attempt, phase))`,
  `CREATE TABLE IF NOT EXISTS fleet_claims (
    fleet TEXT NOT NULL, host TEXT NOT NULL, evacuation TEXT NOT NULL, PRIMARY KEY (fleet, host))`,
  `CREATE TABLE IF NOT EXISTS fleet_reservations (
    vm_key TEXT PRIMARY KEY, evacuation TEXT NOT NULL, host TEXT NOT NULL, devices INTEGER NOT NULL)`
]

/** Creates the fleet's tables if they are missing. */
export const migrate: Effect.Effect<void, SqlError, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  for (const statement of ddl) yield* sql.unsafe(statement)
})

/** Where a VM of an evacuation stands. */
export type VmStatus = "pending" | "reserving" | "migrating" | "migrated" | "rolled-back"

/** A VM's row, as read back. */
export interface VmRecord {
  readonly evacuation: string
  readonly vm: string
  readonly order: number
  readonly source: string
  readonly destination: string
  readonly devices: number
  readonly bytesTotal: number
  readonly status: VmStatus
  readonly phase: string | undefined
  readonly bytesSent: number
  readonly attempts: number
  readonly downtimeMs: number | undefined
  readonly reason: string | undefined
  readonly startedAt: number | undefined
  readonly finishedAt: number | undefined
}

/** An evacuation's row. */
export interface EvacuationRecord {
  readonly id: string
  readonly fleet: string
  readonly host: string
  readonly plan: string
  readonly status: "running" | "done"
  readonly startedAt: number
  readonly finishedAt: number | undefined
}

/** One phase of one attempt. */
export interface PhaseRecord {
  readonly vm: string
  readonly attempt: number
  readonly phase: string
  readonly startedAt: number
  readonly endedAt: number | undefined
}

const num = (v: unknown): number => (typeof v === "number" ? v : Number(v))
const optNum = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : num(v))
const optStr = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v))

/** The VMs of a new evacuation, as recorded. */
export interface NewVm {
  readonly vm: string
  readonly source: string
  readonly destination: string
  readonly devices: number
  readonly bytes: number
}

/**
 * The evacuation under way for `fleet` and `host`: the one already claimed, or `candidate`
 * (then recorded with its VMs, pending), atomically, so that two processes asked at once end
 * up in the same evacuation. Answers the evacuation's record.
 */
export const claimEvacuation = (candidate: EvacuationRecord, vms: ReadonlyArray<NewVm>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`INSERT INTO fleet_claims (fleet, host, evacuation)
          VALUES (${candidate.fleet}, ${candidate.host}, ${candidate.id}) ON CONFLICT (fleet, host) DO NOTHING`
        const claims = yield* sql<{ evacuation: string }>`SELECT evacuation FROM fleet_claims
          WHERE fleet = ${candidate.fleet} AND host = ${candidate.host}`
        const id = claims[0]?.evacuation ?? candidate.id
        if (id === candidate.id) yield* recordEvacuation(candidate, vms)
        const rows = yield* sql<Record<string, unknown>>`SELECT id, fleet, host, plan, status, started_at, finished_at
          FROM fleet_evacuations WHERE id = ${id}`
        const row = rows[0]
        return row === undefined ? candidate : evacuationOf(row)
      })
    )
  })

/** The evacuation claimed for `fleet` and `host` (under way), if any. */
export const claimOf = (fleet: string, host: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{
      evacuation: string
    }>`SELECT evacuation FROM fleet_claims WHERE fleet = ${fleet} AND host = ${host}`
    return rows[0]?.evacuation
  })

const evacuationOf = (r: Record<string, unknown>): EvacuationRecord => ({
  id: String(r.id),
  fleet: String(r.fleet),
  host: String(r.host),
  plan: String(r.plan),
  status: r.status === "done" ? "done" : "running",
  startedAt: num(r.started_at),
  finishedAt: optNum(r.finished_at)
})

/** Records a new evacuation and its VMs (pending), unless it is recorded already. */
export const recordEvacuation = (evacuation: EvacuationRecord, vms: ReadonlyArray<NewVm>) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`INSERT INTO fleet_evacuations (id, fleet, host, plan, status, started_at)
          VALUES (${evacuation.id}, ${evacuation.fleet}, ${evacuation.host}, ${evacuation.plan}, 'running', ${evacuation.startedAt})
          ON CONFLICT (id) DO NOTHING`
        for (const [order, v] of vms.entries())
          yield* sql`INSERT INTO fleet_vms (evacuation, vm, ord, source, destination, devices, bytes_total, status,
              bytes_sent, attempts, updated_at)
            VALUES (${evacuation.id}, ${v.vm}, ${order}, ${v.source}, ${v.destination}, ${v.devices}, ${v.bytes}, 'pending',
              0, 0, ${evacuation.startedAt})
            ON CONFLICT (evacuation, vm) DO NOTHING`
      })
    )
  })

/** Marks an evacuation done; the next request to evacuate its host starts a new one. */
export const finishEvacuation = (id: string, at: number) =>
  Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
    sql.withTransaction(
      Effect.gen(function* () {
        yield* sql`UPDATE fleet_evacuations SET status = 'done', finished_at = COALESCE(finished_at, ${at}) WHERE id = ${id}`
        yield* sql`DELETE FROM fleet_claims WHERE evacuation = ${id}`
      })
    )
  )

/** A change to a VM's row: only the fields given change. */
export interface VmUpdate {
  readonly status?: VmStatus
  readonly phase?: string
  readonly bytesSent?: number
  readonly attempts?: number
  readonly downtimeMs?: number
  readonly reason?: string
  readonly startedAt?: number
  readonly finishedAt?: number
}

/** Updates a VM's row. */
export const updateVm = (evacuation: string, vm: string, update: VmUpdate, at: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const sets = [
      update.status === undefined ? undefined : sql`status = ${update.status}`,
      update.phase === undefined ? undefined : sql`phase = ${update.phase}`,
      update.bytesSent === undefined ? undefined : sql`bytes_sent = ${update.bytesSent}`,
      update.attempts === undefined ? undefined : sql`attempts = ${update.attempts}`,
      update.downtimeMs === undefined ? undefined : sql`downtime_ms = ${update.downtimeMs}`,
      update.reason === undefined ? undefined : sql`reason = ${update.reason}`,
      update.startedAt === undefined ? undefined : sql`started_at = COALESCE(started_at, ${update.startedAt})`,
      update.finishedAt === undefined ? undefined : sql`finished_at = ${update.finishedAt}`,
      sql`updated_at = ${at}`
    ].filter((s) => s !== undefined)
    yield* sql`UPDATE fleet_vms SET ${sql.csv(sets)} WHERE evacuation = ${evacuation} AND vm = ${vm}`
  })

/** Records that a phase of an attempt began (and, with `endedAt`, ended). */
export const recordPhase = (evacuation: string, vm: string, attempt: number, phase: string, startedAt: number) =>
  Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
    Effect.asVoid(sql`INSERT INTO fleet_phases (evacuation, vm, attempt, phase, started_at)
      VALUES (${evacuation}, ${vm}, ${attempt}, ${phase}, ${startedAt})
      ON CONFLICT (evacuation, vm, attempt, phase) DO NOTHING`)
  )

/** Records that a phase of an attempt ended. */
export const endPhase = (evacuation: string, vm: string, attempt: number, phase: string, endedAt: number) =>
  Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
    Effect.asVoid(sql`UPDATE fleet_phases SET ended_at = ${endedAt}
      WHERE evacuation = ${evacuation} AND vm = ${vm} AND attempt = ${attempt} AND phase = ${phase} AND ended_at IS NULL`)
  )

/** The evacuations recorded, newest first. */
export const evacuations = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<Record<string, unknown>>`SELECT id, fleet, host, plan, status, started_at, finished_at
    FROM fleet_evacuations ORDER BY started_at DESC`
  return rows.map(evacuationOf)
})

/** Every VM of an evacuation, in start order. */
export const vmsOf = (evacuation: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<
      Record<string, unknown>
    >`SELECT * FROM fleet_vms WHERE evacuation = ${evacuation} ORDER BY ord`
    return rows.map(
      (r): VmRecord => ({
        evacuation,
        vm: String(r.vm),
        order: num(r.ord),
        source: String(r.source),
        destination: String(r.destination),
        devices: num(r.devices),
        bytesTotal: num(r.bytes_total),
        status: String(r.status) as VmStatus,
        phase: optStr(r.phase),
        bytesSent: num(r.bytes_sent),
        attempts: num(r.attempts),
        downtimeMs: optNum(r.downtime_ms),
        reason: optStr(r.reason),
        startedAt: optNum(r.started_at),
        finishedAt: optNum(r.finished_at)
      })
    )
  })

/** Every phase recorded for an evacuation. */
export const phasesOf = (evacuation: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<Record<string, unknown>>`SELECT vm, attempt, phase, started_at, ended_at FROM fleet_phases
      WHERE evacuation = ${evacuation} ORDER BY started_at`
    return rows.map(
      (r): PhaseRecord => ({
        vm: String(r.vm),
        attempt: num(r.attempt),
        phase: String(r.phase),
        startedAt: num(r.started_at),
        endedAt: optNum(r.ended_at)
      })
    )
  })

/**
 * Reserves `devices` on `host` for `vmKey` if the host has room: its capacity, less the
 * devices of the VMs living there and those reserved there by this evacuation. Answers the
 * free devices when it refuses, `undefined` when reserved (or already reserved there).
 */
export const reserve = (options: {
  readonly vmKey: string
  readonly evacuation: string
  readonly host: string
  readonly devices: number
  readonly capacity: number
  readonly residentDevices: number
}) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const lock = sql.onDialectOrElse({ pg: () => sql.literal("FOR UPDATE"), orElse: () => sql.literal("") })
    return yield* sql.withTransaction(
      Effect.gen(function* () {
        const mine = yield* sql<{
          host: string
        }>`SELECT host FROM fleet_reservations WHERE vm_key = ${options.vmKey} ${lock}`
        if (mine[0]?.host === options.host) return undefined
        const rows = yield* sql<Record<string, unknown>>`SELECT devices FROM fleet_reservations
          WHERE host = ${options.host} AND evacuation = ${options.evacuation} ${lock}`
        const reserved = rows.reduce((n, r) => n + num(r.devices), 0)
        const free = options.capacity - options.residentDevices - reserved
        if (free < options.devices) return free
        yield* sql`INSERT INTO fleet_reservations (vm_key, evacuation, host, devices)
          VALUES (${options.vmKey}, ${options.evacuation}, ${options.host}, ${options.devices})
          ON CONFLICT (vm_key) DO UPDATE SET host = ${options.host}, devices = ${options.devices}`
        return undefined
      })
    )
  })

/** Drops a VM's reservation (idempotent). */
export const release = (vmKey: string) =>
  Effect.flatMap(Effect.service(SqlClient.SqlClient), (sql) =>
    Effect.asVoid(sql`DELETE FROM fleet_reservations WHERE vm_key = ${vmKey}`)
  )
