import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as SqlClient from "effect/sql/SqlClient"
import { fenced, historyOf, JournalDatabase, migrate, takeEpoch } from "../src/FencedJournal.js"
import * as SqliteClient from "../src/SqliteClient.js"

/** A journal database in memory. */
const database = Layer.effect(JournalDatabase, SqliteClient.make({ filename: ":memory:" })).pipe(
  Layer.provide(Reactivity.layer)
)

describe("the fenced commit journal", () => {
  it.effect("an attempt superseded by a newer epoch can record nothing, COMMIT least of all", () =>
    Effect.gen(function* () {
      yield* migrate
      const sql = yield* JournalDatabase
      const first = yield* takeEpoch("ev/vm1")
      const old = fenced(sql, "ev/vm1", first)
      yield* old.begin("m1")
      // A newer attempt looks at the VM (after a crash, or a runner that lost its shard but not its life).
      const second = yield* takeEpoch("ev/vm1")
      expect(second).toBe(first + 1)
      const fencedOut = yield* Effect.flip(old.decide("m1", "commit"))
      expect(fencedOut._tag).toBe("JournalFailed")
      expect(fencedOut.message).toContain(`fenced: this attempt holds epoch ${first}, superseded by epoch ${second}`)
      // The newer attempt settles the old migration: ABORT, and that stands.
      const current = fenced(sql, "ev/vm1", second)
      expect(yield* current.decide("m1", "abort", "superseded")).toBe("aborted")
      expect(yield* current.decide("m1", "commit")).toBe("aborted")
      const history = yield* historyOf("ev/vm1")
      expect(history.map((c) => [c.migration, c.status, c.epoch])).toEqual([
        ["m1", "started", first],
        ["m1", "aborted", second]
      ])
    }).pipe(Effect.provide(database))
  )

  it.effect("keeps the migration package's rules: begin once, the first decision stands, complete after commit", () =>
    Effect.gen(function* () {
      yield* migrate
      const sql = yield* JournalDatabase
      const journal = fenced(sql, "ev/vm2", yield* takeEpoch("ev/vm2"))
      yield* journal.begin("m2")
      expect((yield* Effect.flip(journal.begin("m2"))).message).toContain("already recorded (started)")
      expect(yield* journal.decide("m2", "commit")).toBe("committed")
      expect(yield* journal.decide("m2", "abort")).toBe("committed")
      yield* journal.complete("m2")
      expect((yield* journal.entries).map((e) => [e.migration, e.status])).toEqual([["m2", "completed"]])
      // Epochs are per VM: another VM's attempts do not fence this one.
      yield* takeEpoch("ev/other")
      yield* journal.begin("m3")
      expect((yield* journal.entries).map((e) => e.status)).toEqual(["completed", "started"])
    }).pipe(Effect.provide(database))
  )

  it.effect("is an effect/sql client over node:sqlite: transactions roll back, unique keys are classified", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER, w TEXT UNIQUE)`
      yield* sql`INSERT INTO t (k, v, w) VALUES (${"a"}, ${1}, ${"x"})`
      const failed = yield* Effect.flip(
        sql.withTransaction(
          Effect.andThen(
            sql`INSERT INTO t (k, v) VALUES (${"b"}, ${2})`,
            sql`INSERT INTO t (k, v, w) VALUES (${"c"}, ${3}, ${"x"})`
          )
        )
      )
      // SQLite's extended result codes: SQLITE_CONSTRAINT_UNIQUE (2067) and SQLITE_CONSTRAINT_PRIMARYKEY (1555).
      expect(failed.reason._tag).toBe("UniqueViolation")
      expect((yield* Effect.flip(sql`INSERT INTO t (k, v) VALUES (${"a"}, ${9})`)).reason._tag).toBe("ConstraintError")
      expect(yield* sql<{ k: string; v: number }>`SELECT k, v FROM t ORDER BY k`).toEqual([{ k: "a", v: 1 }])
      expect(yield* sql`SELECT k, v FROM t`.values).toEqual([["a", 1]])
      const upserted = yield* sql<{
        v: number
      }>`INSERT INTO t (k, v) VALUES (${"a"}, ${5}) ON CONFLICT (k) DO UPDATE SET v = t.v + 1 RETURNING v`
      expect(upserted).toEqual([{ v: 2 }])
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" })))
  )
})
