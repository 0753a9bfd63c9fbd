/*
 * A destination killed after COMMIT: the source has journalled the decision, so it stays
 * stopped, but no destination ever confirmed that it runs the group: the group may run nowhere.
 * That is its own outcome (exit code 3), with no downtime figure (no resume was confirmed) and
 * the commands that settle it from the journal. The destination is a real process, killed
 * (SIGKILL) once the journal file says COMMIT, while it resumes (its resume arc takes 1 s).
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "../../packages/cli/test/runCli.js"
import { connect, listen, whenJournalSays } from "./MigratePair.js"
import { writeSlowStepsScenario } from "./Scenarios.js"

let dir = ""
let scenario = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-unconfirmed-"))
  scenario = await writeSlowStepsScenario(dir)
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe("a destination killed after COMMIT", () => {
  it("the source reports committed, destination unconfirmed, exits 3, and the journal gives the group to the destination", async () => {
    const journal = join(dir, "journal.json")
    const { destination, port } = await listen(scenario, ["--json", "--journal", journal])
    const source = connect(scenario, port, ["--json", "--journal", journal])
    const migration = await whenJournalSays(journal, "committed")
    destination.signal("SIGKILL")
    const [s, d] = await Promise.all([source.exited, destination.exited])
    // Killed before it said anything: it never printed a result.
    expect(d.stdout).toBe("")

    expect(s.code, s.stderr).toBe(3)
    const out = JSON.parse(s.stdout)
    expect(out).toMatchObject({
      ok: false,
      outcome: "committed-unconfirmed",
      exitCode: 3,
      role: "source",
      error: {
        _tag: "CommitUnconfirmed",
        journal,
        recovery: [
          `lockstep journal show ${journal}`,
          `lockstep journal resolve ${journal} --owner destination`,
          `lockstep journal resolve ${journal} --owner source`
        ]
      },
      migration,
      confirmed: false,
      final: { gpu0: "STOP_COPY", gpu1: "STOP_COPY" }
    })
    // No resume was confirmed, so there is no downtime to report, nor a limit missed.
    expect(out).not.toHaveProperty("downtimeMs")
    expect(out).not.toHaveProperty("downtimeLimitMissedByMs")
    expect(out.error.message).toContain("the group may run nowhere")

    // The journal says so too, and settles nothing by itself.
    const shown = await runCli("journal", "show", journal, "--json")
    expect(shown.exitCode).toBe(0)
    expect(JSON.parse(shown.stdout)).toMatchObject({
      ownership: { owner: "destination", verdict: "DestinationOwns", migration, confirmed: false },
      settled: false,
      migrations: [{ migration, status: "committed" }]
    })

    // The destination restarted with the same journal reads it first, and takes nothing new.
    const restarted = await runCli("migrate", "--listen", "0", "--journal", journal, "--json", scenario)
    expect(restarted.exitCode).toBe(4)
    expect(JSON.parse(restarted.stdout)).toMatchObject({
      ok: false,
      role: "destination",
      error: { _tag: "JournalUnsettled", migration, status: "committed" }
    })
    expect(restarted.stderr).not.toContain("listening on")
  })
})
