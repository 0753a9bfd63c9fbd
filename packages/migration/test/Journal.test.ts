import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { hostname, tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Journal } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { allIn, assertSafe, failureOf, makePair, migrate, threeGpus } from "./Harness.js"

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

      it.effect("a new migration may start only after an aborted one, or none", () =>
        Effect.gen(function* () {
          const journal = make()
          expect(yield* Journal.unsettled(journal)).toBeUndefined()
          yield* journal.begin("m")
          expect(yield* Journal.unsettled(journal)).toMatchObject({
            _tag: "JournalUnsettled",
            migration: "m",
            status: "started",
            location: journal.location
          })
          yield* journal.decide("m", "commit")
          expect(yield* Journal.unsettled(journal)).toMatchObject({ status: "committed" })
          yield* journal.complete("m")
          expect(yield* Journal.unsettled(journal)).toMatchObject({ status: "completed" })
          yield* journal.renounce("m", "the group came back")
          expect(yield* Journal.unsettled(journal)).toBeUndefined()
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

  // The same rules hold for every store; a file journal's started entries are this process's, in
  // progress, which a resolution refuses (below).
  it.effect("an operator's resolution gives the group to the side named, by the status it finds", () =>
    Effect.gen(function* () {
      // The rule: to the source, undecided → ABORT and committed or completed → given back
      // (aborted); to the destination, undecided → COMMIT and committed → completed; an
      // aborted migration cannot go to the destination (it has reset), and a settled one stays.
      const cases = [
        ["started", "source", "aborted", "SourceOwns"],
        ["started", "destination", "committed", "DestinationOwns"],
        ["committed", "source", "aborted", "SourceOwns"],
        ["committed", "destination", "completed", "DestinationOwns"],
        ["completed", "source", "aborted", "SourceOwns"],
        ["completed", "destination", "completed", "DestinationOwns"],
        ["aborted", "source", "aborted", "SourceOwns"]
      ] as const
      for (const [status, owner, to, verdict] of cases) {
        const journal = Journal.memory()
        yield* journal.begin("m")
        if (status !== "started") yield* journal.decide("m", status === "aborted" ? "abort" : "commit")
        if (status === "completed") yield* journal.complete("m")
        const resolution = yield* Journal.resolve(journal, owner, { reason: "operator" })
        expect(resolution).toEqual({ migration: "m", from: status, to })
        expect((yield* Journal.ownership(journal))._tag).toBe(verdict)
      }
      const aborted = Journal.memory()
      yield* aborted.decide("x", "abort", "fenced")
      const refused = yield* Effect.flip(Journal.resolve(aborted, "destination"))
      expect(refused).toMatchObject({ _tag: "JournalFailed", operation: "resolve" })
      expect(refused.reason).toContain("has reset its devices")
      expect((yield* Effect.flip(Journal.resolve(Journal.memory(), "source"))).reason).toContain("no migration")
      // An older migration may be named.
      const two = Journal.memory()
      yield* two.begin("old")
      yield* two.begin("new")
      expect(yield* Journal.resolve(two, "source", { migration: "old" })).toMatchObject({ migration: "old" })
      expect((yield* two.entries).map((e) => [e.migration, e.status])).toEqual([
        ["new", "started"],
        ["old", "aborted"]
      ])
    })
  )

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

  it.live("a started entry names its process: in progress while it lives on this host, stale once it is gone", () =>
    Effect.gen(function* () {
      const path = join(dir, "owner.json")
      const journal = Journal.file(path)
      yield* journal.begin("mine")
      const [entry] = yield* journal.entries
      expect(entry).toMatchObject({ migration: "mine", status: "started", pid: process.pid, host: hostname() })
      if (entry === undefined) return
      expect(Journal.inProgress(entry)).toBe(true)
      expect(yield* Journal.unsettled(journal)).toMatchObject({ status: "started", inProgress: true })
      // Nobody may decide a migration its source is still running.
      expect((yield* Effect.flip(Journal.resolve(journal, "source"))).reason).toContain("in progress")
      expect(Journal.inProgress({ ...entry, pid: 999_999_999 })).toBe(false)
      expect(Journal.inProgress({ ...entry, host: `not-${hostname()}` })).toBe(false)
      expect(Journal.inProgress({ ...entry, status: "committed" })).toBe(false)
      // The source died: the entry on disk now names a process that is gone.
      const doc = JSON.parse(yield* Effect.promise(() => readFile(path, "utf8")))
      doc.migrations[0].pid = 999_999_999
      yield* Effect.promise(() => writeFile(path, JSON.stringify(doc)))
      const stale = yield* Journal.unsettled(journal)
      expect(stale).toMatchObject({ status: "started", inProgress: false })
      expect(stale?.message).toContain("never decided (its source stopped before deciding)")
      // Begun on another host (shared storage): this host cannot tell, and says so.
      doc.migrations[0].host = `not-${hostname()}`
      yield* Effect.promise(() => writeFile(path, JSON.stringify(doc)))
      expect((yield* Journal.unsettled(journal))?.message).toContain(`on not-${hostname()} and never decided`)
      expect(yield* Journal.resolve(journal, "source")).toEqual({ migration: "mine", from: "started", to: "aborted" })
    })
  )

  it.effect("a source whose journal is not settled refuses before touching anything, and tells the destination", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      yield* pair.journal.begin("earlier")
      const out = yield* runOnVirtualTime(migrate(pair))
      const source = yield* failureOf(out.source)
      expect(source).toMatchObject({
        phase: "handshake",
        origin: "source",
        touched: false,
        cause: { _tag: "JournalUnsettled", migration: "earlier", status: "started" }
      })
      expect(source.message).toContain("lockstep journal resolve memory --owner source")
      expect(yield* failureOf(out.destination)).toMatchObject({
        touched: false,
        cause: { _tag: "PeerAborted", peer: "source", tag: "JournalUnsettled" }
      })
      expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      expect((yield* pair.journal.entries).map((e) => e.migration)).toEqual(["earlier"])
      yield* assertSafe(pair)
    })
  )
})
