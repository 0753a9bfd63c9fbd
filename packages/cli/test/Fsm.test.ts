import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

describe("lockstep fsm path", () => {
  it("prints the kernel path with all flags by default", async () => {
    const r = await runCli("fsm", "path", "--from", "RUNNING", "--to", "STOP_COPY")
    expect(r.exitCode).toBe(0)
    expect(r.stdout.trim()).toBe("RUNNING → RUNNING_P2P → STOP → STOP_COPY")
  })

  it("honours --flags", async () => {
    const r = await runCli("fsm", "path", "--from", "RUNNING", "--to", "STOP_COPY", "--flags", "STOP_COPY")
    expect(r.stdout.trim()).toBe("RUNNING → STOP → STOP_COPY")
  })

  it("explains a refused transition and exits 1", async () => {
    const r = await runCli("fsm", "path", "--from", "STOP_COPY", "--to", "PRE_COPY")
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toContain("BlockedTransition")
  })

  it("rejects an unknown state, listing the valid ones, with exit code 2", async () => {
    const r = await runCli("fsm", "path", "--from", "RUNING", "--to", "STOP")
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('unknown state "RUNING"')
    expect(r.stderr).toContain("RUNNING_P2P, PRE_COPY, PRE_COPY_P2P")
  })

  it("rejects an unknown flag, listing the valid ones, with exit code 2", async () => {
    const r = await runCli("fsm", "table", "--flags", "STOP_COPY,NDMA")
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('"NDMA"')
    expect(r.stderr).toContain("STOP_COPY, P2P, PRE_COPY")
  })
})

describe("lockstep fsm table", () => {
  it("prints one JSON line per (flags, from, to) for all 8 flag sets without --flags", async () => {
    const r = await runCli("fsm", "table", "--json")
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
    expect(lines).toHaveLength(8 * 8 * 8)
    expect(lines).toContainEqual({
      flags: ["STOP_COPY", "P2P"],
      from: "RUNNING",
      to: "STOP",
      ok: true,
      path: ["RUNNING", "RUNNING_P2P", "STOP"]
    })
    expect(lines).toContainEqual({ flags: [], from: "RUNNING", to: "STOP", ok: false, error: "MissingStopCopy" })
    expect(lines).toContainEqual({
      flags: ["STOP_COPY", "P2P", "PRE_COPY"],
      from: "RUNNING",
      to: "RUNNING",
      ok: true,
      path: ["RUNNING"]
    })
  })

  it("limits the JSON to the given flag set", async () => {
    const r = await runCli("fsm", "table", "--json", "--flags", "PRE_COPY,STOP_COPY")
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
    expect(lines).toHaveLength(64)
    for (const l of lines) expect(l.flags).toEqual(["STOP_COPY", "PRE_COPY"])
  })

  it("prints a readable matrix", async () => {
    const r = await runCli("fsm", "table", "--flags", "STOP_COPY,P2P")
    expect(r.stdout).toMatch(/^RUNNING\s+×error\s+RP>S\s+·\s+RP>S>SC/m)
  })

  it("says in one line that a flag set without STOP_COPY has no table (STOP_COPY is mandatory)", async () => {
    const r = await runCli("fsm", "table", "--flags", "P2P")
    expect(r.exitCode).toBe(2)
    expect(r.stdout).toBe("")
    expect(r.stderr.split("\n")).toEqual([expect.stringContaining("STOP_COPY is mandatory"), ""])
  })
})

describe("the lockstep binary", () => {
  it("runs as a real process through the package's bin", () => {
    const bin = fileURLToPath(new URL("../bin/lockstep.js", import.meta.url))
    const r = spawnSync(process.execPath, [bin, "fsm", "path", "--from", "STOP", "--to", "RUNNING"], {
      encoding: "utf8"
    })
    expect(r.status).toBe(0)
    expect(r.stdout.trim()).toBe("STOP → RUNNING_P2P → RUNNING")
  })
})

describe("usage errors", () => {
  it("exit 2 after printing the help and the error", async () => {
    const r = await runCli("fsm", "path", "--from", "RUNNING")
    expect(r.exitCode).toBe(2)
    expect(r.stdout + r.stderr).toContain("--to")
  })
})
