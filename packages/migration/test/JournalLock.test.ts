import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Journal, JournalLock } from "@lockstep/migration"
import { Effect, Exit, Fiber, Scope } from "effect"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-journal-lock-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

/** A pid that no process has any more: a child that has exited (and been reaped). */
const deadPid = (): number => {
  const child = spawnSync(process.execPath, ["-e", ""])
  if (child.pid === undefined) throw new Error("could not start a child process")
  return child.pid
}

describe("the journal lock", () => {
  it.live(
    "a lock held by a live process past the timeout is a JournalLockHeld naming the lock, its holder and what to do",
    () =>
      Effect.gen(function* () {
        const path = join(dir, "held.json")
        const lockPath = `${path}.lock`
        // This process is alive: its pid in the lock file is a live holder.
        yield* Effect.promise(() => writeFile(lockPath, String(process.pid)))
        const error = yield* Effect.flip(Effect.scoped(JournalLock.acquire(lockPath, { timeoutMs: 30 })))
        expect(error).toBeInstanceOf(JournalLock.JournalLockHeld)
        expect(error).toMatchObject({ _tag: "JournalLockHeld", lockPath, holder: process.pid, waitedMs: 30 })
        expect(error.message).toContain(lockPath)
        expect(error.message).toContain(`process ${process.pid}`)
        expect(error.message).toContain("wait for that process to finish")
        expect(error.message).toContain(`remove ${lockPath}`)
        // The waiter leaves a live holder's lock alone.
        expect(yield* Effect.promise(() => readFile(lockPath, "utf8"))).toBe(String(process.pid))

        // Through the journal: the change is refused with that sentence, and nothing is written.
        const journal = Journal.file(path, { lockTimeoutMs: 30 })
        const failure = yield* Effect.flip(journal.begin("m"))
        expect(failure).toMatchObject({ _tag: "JournalFailed", operation: "begin", location: path })
        expect(failure.reason).toContain(`the journal lock ${lockPath} is held by process ${process.pid}`)
        expect(existsSync(path)).toBe(false)
      })
  )

  it.live(
    "takes over a stale lock whose process is gone, holds it with its own pid, and releases it with its scope",
    () =>
      Effect.gen(function* () {
        const path = join(dir, "stale.json")
        const lockPath = `${path}.lock`
        yield* Effect.promise(() => writeFile(lockPath, String(deadPid())))
        const scope = yield* Scope.make()
        yield* JournalLock.acquire(lockPath, { timeoutMs: 30 }).pipe(Scope.provide(scope))
        expect(yield* Effect.promise(() => readFile(lockPath, "utf8"))).toBe(String(process.pid))
        yield* Scope.close(scope, Exit.void)
        expect(existsSync(lockPath)).toBe(false)

        // Through the journal: a stale lock does not stop a change.
        yield* Effect.promise(() => writeFile(lockPath, String(deadPid())))
        const journal = Journal.file(path, { lockTimeoutMs: 30 })
        yield* journal.begin("m")
        expect((yield* journal.entries).map((e) => [e.migration, e.status])).toEqual([["m", "started"]])
        expect(existsSync(lockPath)).toBe(false)
      })
  )

  it.live("a waiter takes the lock once its live holder releases it", () =>
    Effect.gen(function* () {
      const lockPath = join(dir, "handover.json.lock")
      const holder = yield* Scope.make()
      yield* JournalLock.acquire(lockPath, { timeoutMs: 30 }).pipe(Scope.provide(holder))
      const waiter = yield* Effect.forkChild(
        Effect.scoped(
          Effect.andThen(
            JournalLock.acquire(lockPath, { timeoutMs: 60_000 }),
            Effect.promise(() => readFile(lockPath, "utf8"))
          )
        )
      )
      yield* Scope.close(holder, Exit.void)
      expect(yield* Fiber.join(waiter)).toBe(String(process.pid))
      expect(existsSync(lockPath)).toBe(false)
    })
  )
})
