/*
 * The crash table of packages/migration/README.md, with real processes: the source of
 * `lockstep migrate` is killed (SIGKILL: no cleanup, no last word) at each step its journal
 * records, then restarted with the same journal, and the journal must answer who owns the
 * group; the restarted source must never migrate a group the journal does not give it.
 *
 * step the source dies at   the destination            the journal says          a restarted source
 * started (pre-copy)        loses it before the vote:   undecided: the source     refuses until an operator
 *                           resets, parks, exits 1      owns, the destination     settles it; settled to the
 *                                                       must reset                source, it goes ahead
 * committed                 resumes (told, or reads     the destination owns,     refuses: a committed
 *                           COMMIT in the journal)      unconfirmed               migration is never re-run
 * completed                 runs                        the destination owns,     refuses: its copy is stale
 *                                                       confirmed
 *
 * The restarts run the CLI in this process: a restart is a new reader of the same file.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "../../packages/cli/test/runCli.js"
import { connect, journalStatuses, listen, whenJournalSays } from "./MigratePair.js"
import { writeSlowStepsScenario } from "./Scenarios.js"

let dir = ""
let scenario = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-crash-table-"))
  scenario = await writeSlowStepsScenario(dir)
})
afterAll(() => rm(dir, { recursive: true, force: true }))

/** Runs a migration whose source is killed once the journal says `status`; answers how each side ended. */
const killSourceAt = async (status: "started" | "committed" | "completed", journal: string) => {
  const { destination, port } = await listen(scenario, ["--json", "--journal", journal])
  const source = connect(scenario, port, ["--json", "--journal", journal])
  const migration = await whenJournalSays(journal, status)
  source.signal("SIGKILL")
  const [s, d] = await Promise.all([source.exited, destination.exited])
  return { migration, source: s, destination: d }
}

const show = async (journal: string) => {
  const run = await runCli("journal", "show", journal, "--json")
  expect(run.exitCode, run.stderr).toBe(0)
  return JSON.parse(run.stdout)
}

/** A source restarted with `journal`, toward a port nobody listens on: it must stop at the journal, or get past it. */
const restartSource = (journal: string) => runCli("migrate", "--connect", "127.0.0.1:9", "--journal", journal, scenario)

describe("the crash table, with the source killed at each journal step", () => {
  it("killed while started: the source owns the group; a restart waits for the operator, then goes ahead", async () => {
    const journal = join(dir, "started.json")
    const { migration, source, destination } = await killSourceAt("started", journal)
    expect(source.code).not.toBe(0)
    // Lost before its vote: the destination resets its devices, parks them in STOP and fails.
    expect(destination.code).toBe(1)
    expect(JSON.parse(destination.stdout)).toMatchObject({
      ok: false,
      role: "destination",
      final: { gpu0: "STOP", gpu1: "STOP" }
    })
    expect(await show(journal)).toMatchObject({
      ownership: { owner: "source", verdict: "Undecided", migration },
      settled: false,
      migrations: [{ migration, status: "started", inProgress: false }]
    })

    const refused = await restartSource(journal)
    expect(refused.exitCode).toBe(4)
    expect(refused.stderr).toContain(`holds migration ${migration}, started and never decided`)
    expect(refused.stderr).toContain(`lockstep journal resolve ${journal} --owner source`)

    const resolved = await runCli("journal", "resolve", journal, "--owner", "source", "--json")
    expect(resolved.exitCode, resolved.stderr).toBe(0)
    expect(JSON.parse(resolved.stdout)).toMatchObject({ migration, from: "started", to: "aborted" })
    expect(await show(journal)).toMatchObject({ ownership: { owner: "source", verdict: "SourceOwns" }, settled: true })

    // Settled: the restarted source gets past its journal (and on to the network, where nobody listens).
    const ahead = await restartSource(journal)
    expect(ahead.exitCode).toBe(1)
    expect(ahead.stderr).toContain("127.0.0.1:9")
    expect(await journalStatuses(journal)).toEqual([expect.objectContaining({ migration, status: "aborted" })])
  })

  it("killed once committed: the destination resumes and owns the group; a restart never re-runs it", async () => {
    const journal = join(dir, "committed.json")
    const { migration, destination } = await killSourceAt("committed", journal)
    // Told COMMIT before the source died, or reading it in the journal once the channel broke: it runs.
    expect(destination.code, destination.stderr).toBe(0)
    expect(JSON.parse(destination.stdout)).toMatchObject({
      ok: true,
      migration,
      final: { gpu0: "RUNNING", gpu1: "RUNNING" }
    })
    expect(await show(journal)).toMatchObject({
      ownership: { owner: "destination", verdict: "DestinationOwns", migration, confirmed: false },
      settled: false
    })
    const refused = await restartSource(journal)
    expect(refused.exitCode).toBe(4)
    expect(refused.stderr).toContain(`holds migration ${migration}, committed and never confirmed`)

    // The operator checks that the destination runs it and records so: the group stays with it.
    const resolved = await runCli("journal", "resolve", journal, "--owner", "destination", "--json")
    expect(JSON.parse(resolved.stdout)).toMatchObject({ migration, from: "committed", to: "completed" })
    expect((await restartSource(journal)).exitCode).toBe(4)
  })

  it("killed once completed: the destination owns the group, confirmed; a restart refuses its stale copy", async () => {
    const journal = join(dir, "completed.json")
    const { migration, destination } = await killSourceAt("completed", journal)
    expect(destination.code, destination.stderr).toBe(0)
    expect(await show(journal)).toMatchObject({
      ownership: { owner: "destination", verdict: "DestinationOwns", migration, confirmed: true },
      settled: false
    })
    const refused = await restartSource(journal)
    expect(refused.exitCode).toBe(4)
    expect(refused.stderr).toContain(`holds migration ${migration}, completed`)
    expect(refused.stderr).toContain(`lockstep journal resolve ${journal} --owner source`)
  })
})
