/*
 * `lockstep journal show` and `resolve`, in process: what they print for each verdict, and the
 * sentence and exit code of each way they can fail.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Journal } from "@lockstep/migration"
import { Effect } from "effect"
import { runCli } from "./runCli.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-journal-cli-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const journalAt = async (name: string, steps: (j: Journal.Journal) => Effect.Effect<unknown, unknown>) => {
  const path = join(dir, name)
  await Effect.runPromise(Effect.asVoid(steps(Journal.file(path))))
  return path
}

describe("lockstep journal", () => {
  it("show: a journal that does not exist yet records nothing, and the source owns the group", async () => {
    const run = await runCli("journal", "show", join(dir, "none.json"))
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toContain("source owns the group")
    expect(run.stdout).not.toContain("not settled")
  })

  it("show: the owner, whether it is settled, and the history with reasons, in text and JSON", async () => {
    const path = await journalAt("history.json", (j) =>
      Effect.gen(function* () {
        yield* j.begin("a1")
        yield* j.decide("a1", "abort", "the destination refused")
        yield* j.begin("b2")
        yield* j.decide("b2", "commit")
      })
    )
    const text = await runCli("journal", "show", path)
    expect(text.exitCode).toBe(0)
    const lines = text.stdout.trim().split("\n")
    expect(lines[0]).toBe(`journal ${path}`)
    expect(lines[1]).toContain("destination owns migration b2")
    expect(lines[2]).toContain("not settled")
    expect(lines[2]).toContain(`lockstep journal resolve ${path} --owner source`)
    expect(lines.slice(3)).toEqual([
      "  history, oldest first:",
      expect.stringMatching(/^ {4}\d{4}-\d\d-\d\dT.*Z {2}a1 {2}aborted +the destination refused$/),
      expect.stringMatching(/^ {4}\d{4}-\d\d-\d\dT.*Z {2}b2 {2}committed$/)
    ])
    const json = JSON.parse((await runCli("journal", "show", path, "--json")).stdout)
    expect(json).toMatchObject({
      journal: path,
      ownership: { owner: "destination", verdict: "DestinationOwns", migration: "b2", confirmed: false },
      settled: false,
      unsettled: { migration: "b2", status: "committed" },
      migrations: [
        { migration: "a1", status: "aborted", reason: "the destination refused" },
        { migration: "b2", status: "committed" }
      ]
    })
  })

  it("resolve: records the operator's decision and says who owns the group now", async () => {
    const path = await journalAt("resolve.json", (j) =>
      Effect.andThen(j.decide("c3", "abort", "fenced"), j.renounce("c3", "again"))
    )
    const again = await runCli("journal", "resolve", path, "--owner", "source")
    expect(again.exitCode).toBe(0)
    expect(again.stdout).toMatch(/^migration c3: already aborted\n {2}source owns the group/)
    const refused = await runCli("journal", "resolve", path, "--owner", "destination")
    expect(refused.exitCode).toBe(1)
    expect(refused.stderr).toContain("cannot resolve: migration c3 was aborted")
    const unknown = await runCli("journal", "resolve", path, "--owner", "source", "--migration", "zz")
    expect(unknown.exitCode).toBe(1)
    expect(unknown.stderr).toContain("no migration zz is recorded")
  })

  it("says what is wrong with a bad owner (2) or a file that is not a journal (1)", async () => {
    const path = join(dir, "bad.json")
    await writeFile(path, "{ not a journal")
    const owner = await runCli("journal", "resolve", path, "--owner", "both")
    expect(owner.exitCode).toBe(2)
    expect(owner.stderr).toContain('--owner: "both" is not source or destination')
    const corrupt = await runCli("journal", "show", path)
    expect(corrupt.exitCode).toBe(1)
    expect(corrupt.stderr).toContain(`journal ${path}: read failed`)
    expect(corrupt.stderr).toContain("check that the path names the source's journal")
  })
})
