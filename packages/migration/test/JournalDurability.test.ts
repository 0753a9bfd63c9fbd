/*
 * A recorded decision survives a power loss: the journal's new document is written to a
 * temporary file and fsynced, renamed over the old one, and then the directory is fsynced (a
 * rename is an entry of the directory, on disk only once the directory is; without it a COMMIT
 * the destination acted on could vanish with the power). The file system calls are observed by
 * wrapping Node's own (every call still does what it did), and must come in that order for
 * every change the journal answers.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { vi } from "vitest"
import { Journal } from "../src/index.js"

const observed = vi.hoisted(() => ({ calls: [] as Array<string> }))

vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>()
  const open: typeof real.open = async (path, flags, mode) => {
    const handle = await real.open(path, flags, mode)
    const sync = handle.sync.bind(handle)
    handle.sync = () => {
      observed.calls.push(`sync ${String(path)}`)
      return sync()
    }
    return handle
  }
  const rename: typeof real.rename = (from, to) => {
    observed.calls.push(`rename ${String(from)} ${String(to)}`)
    return real.rename(from, to)
  }
  return { ...real, open, rename, default: { ...real, open, rename } }
})

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-journal-durability-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe("Journal.file durability", () => {
  it.live("fsyncs the new document, renames it into place, then fsyncs the directory, for every change", () =>
    Effect.gen(function* () {
      const path = join(dir, "journal.json")
      const journal = Journal.file(path)
      const steps = [
        journal.begin("m"),
        Effect.asVoid(journal.decide("m", "commit")),
        journal.complete("m"),
        journal.renounce("m", "given back")
      ]
      for (const step of steps) {
        observed.calls.length = 0
        yield* step
        const renames = observed.calls.filter((c) => c.startsWith("rename "))
        expect(renames).toHaveLength(1)
        const [, temporary, target] = (renames[0] ?? "").split(" ")
        expect(target).toBe(path)
        const fileSynced = observed.calls.indexOf(`sync ${temporary}`)
        const renamed = observed.calls.indexOf(renames[0] ?? "")
        const directorySynced = observed.calls.lastIndexOf(`sync ${dir}`)
        expect(fileSynced).toBeGreaterThanOrEqual(0)
        expect(fileSynced).toBeLessThan(renamed)
        expect(directorySynced).toBeGreaterThan(renamed)
      }
      expect((yield* journal.entries).map((e) => e.status)).toEqual(["aborted"])
    })
  )

  it.live("a change that stores nothing (a decision already recorded) writes nothing", () =>
    Effect.gen(function* () {
      const journal = Journal.file(join(dir, "again.json"))
      yield* journal.begin("m")
      yield* journal.decide("m", "abort", "first")
      observed.calls.length = 0
      expect(yield* journal.decide("m", "commit")).toBe("aborted")
      expect(observed.calls).toEqual([])
    })
  )
})
