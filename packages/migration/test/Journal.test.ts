import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Journal } from "@lockstep/migration"
import { Effect } from "effect"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-journal-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const stores: ReadonlyArray<readonly [string, () => Journal.Journal]> = [
  ["memory", () => Journal.memory()],
  ["file", () => Journal.file(join(dir, `${Math.random().toString(16).slice(2)}.json`))]
]

describe("Journal", () => {
  for (const [name, make] of stores) {
    describe(name, () => {
      it.effect("records a migration from start to completion, and says the destination owns it", () =>
        Effect.gen(function* () {
          const journal = make()
          expect(yield* Journal.ownership(journal)).toMatchObject({ _tag: "SourceOwns", migration: undefined })
          yield* journal.begin("m1")
          expect(yield* Journal.ownership(journal)).toEqual({ _tag: "Undecided", migration: "m1" })
          expect(yield* journal.decide("m1", "commit")).toBe("committed")
          expect(yield* Journal.ownership(journal)).toEqual({
            _tag: "DestinationOwns",
            migration: "m1",
            confirmed: false
          })
          yield* journal.complete("m1")
          expect(yield* Journal.ownership(journal, "m1")).toEqual({
            _tag: "DestinationOwns",
            migration: "m1",
            confirmed: true
          })
        })
      )

      it.effect("keeps the first decision: a later ABORT does not undo COMMIT, nor COMMIT an ABORT", () =>
        Effect.gen(function* () {
          const journal = make()
          yield* journal.begin("a")
          yield* journal.begin("b")
          expect(yield* journal.decide("a", "commit")).toBe("committed")
          expect(yield* journal.decide("a", "abort", "too late")).toBe("committed")
          expect(yield* journal.decide("b", "abort", "fenced")).toBe("aborted")
          expect(yield* journal.decide("b", "commit")).toBe("aborted")
          expect(yield* Journal.ownership(journal, "b")).toEqual({
            _tag: "SourceOwns",
            migration: "b",
            reason: "fenced"
          })
        })
      )

      it.effect("fences a migration it has never seen with ABORT, and refuses to COMMIT one", () =>
        Effect.gen(function* () {
          const journal = make()
          expect(yield* journal.decide("x", "abort", "the destination lost the source")).toBe("aborted")
          const commit = yield* Effect.flip(journal.decide("y", "commit"))
          expect(commit).toMatchObject({ _tag: "JournalFailed", operation: "decide" })
          const again = yield* Effect.flip(journal.begin("x"))
          expect(again.reason).toContain("already recorded")
        })
      )

      it.effect("renounce gives a committed group back to the source", () =>
        Effect.gen(function* () {
          const journal = make()
          yield* journal.begin("r")
          yield* journal.decide("r", "commit")
          yield* journal.renounce("r", "the destination failed to resume and reset its devices")
          const owner = yield* Journal.ownership(journal)
          expect(owner._tag).toBe("SourceOwns")
          expect(Journal.describeOwnership(owner)).toContain("destination must reset")
          expect(yield* Effect.flip(journal.complete("r"))).toMatchObject({ operation: "complete" })
        })
      )

      it.effect(`keeps the last ${Journal.journalCapacity} migrations`, () =>
        Effect.gen(function* () {
          const journal = make()
          for (let i = 0; i < Journal.journalCapacity + 3; i++) yield* journal.begin(`m${i}`)
          const entries = yield* journal.entries
          expect(entries).toHaveLength(Journal.journalCapacity)
          expect(entries[0]?.migration).toBe("m3")
        })
      )
    })
  }

  it.live("two journals on one file race COMMIT against ABORT: exactly one wins, and both see it", () =>
    Effect.gen(function* () {
      const path = join(dir, "race.json")
      yield* Journal.file(path).begin("m")
      const [a, b] = yield* Effect.all(
        [Journal.file(path).decide("m", "commit"), Journal.file(path).decide("m", "abort", "fence")],
        { concurrency: 2 }
      )
      expect(a).toBe(b)
      const onDisk = JSON.parse(yield* Effect.promise(() => readFile(path, "utf8")))
      expect(onDisk.migrations).toHaveLength(1)
      expect(onDisk.migrations[0].status).toBe(a)
    })
  )

  it.live("breaks a lock left by a process that is gone, and reports a corrupt file as JournalFailed", () =>
    Effect.gen(function* () {
      const path = join(dir, "stale.json")
      yield* Effect.promise(() => writeFile(`${path}.lock`, "999999999"))
      const journal = Journal.file(path)
      yield* journal.begin("s")
      expect((yield* journal.entries).map((e) => e.status)).toEqual(["started"])
      yield* Effect.promise(() => writeFile(path, "{ not json"))
      const failure = yield* Effect.flip(journal.entries)
      expect(failure).toMatchObject({ _tag: "JournalFailed", operation: "read", location: path })
    })
  )
})
