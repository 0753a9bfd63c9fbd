/*
 * DESIGN §2: a group that is not migratable yields a blocker report naming each offending device
 * and edge, before any device is touched. Migratable iff every device with an outgoing edge has
 * the P2P flag; under the shared IOMMU every PCI device may write into every other.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

let dir = ""
const file = (name: string) => join(dir, name)

/** Two GPUs without P2P under one IOMMU: each may write into the other, neither can stop first. */
const twoGpusWithoutP2P = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY"], sim: { stateSize: 65536 } },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY"], sim: { stateSize: 65536 } }
  ],
  topology: "shared-iommu"
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-refusal-"))
  await writeFile(file("blocked.json"), JSON.stringify(twoGpusWithoutP2P))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const expectRefusal = (stdout: string) => {
  const lines = stdout.trim().split("\n")
  expect(lines).toHaveLength(1)
  const result = JSON.parse(lines[0] ?? "")
  expect(result.ok).toBe(false)
  expect(result.error).toMatchObject({
    _tag: "NotMigratable",
    blockers: [
      { device: "gpu0", edges: [["gpu0", "gpu1"]] },
      { device: "gpu1", edges: [["gpu1", "gpu0"]] }
    ]
  })
  expect(result.error.message).toContain("nothing was touched")
  expect(result.error.message).not.toMatch(/back in RUNNING|parked|no safe order/)
  return result
}

describe("a group that is not migratable", () => {
  it("simulate --json refuses it before anything is touched: the blockers on stdout, exit 1", async () => {
    const run = await runCli("simulate", file("blocked.json"), "--json")
    expect(run.exitCode).toBe(1)
    expect(expectRefusal(run.stdout).error.side).toBe("source")
    expect(run.stderr).toBe("")
  })

  it("simulate says it in words: refused, each blocker with its edges, and what to do", async () => {
    const run = await runCli("simulate", file("blocked.json"))
    expect(run.exitCode).toBe(1)
    expect(run.stdout).toContain("migration refused before anything was touched: the source group is not migratable")
    expect(run.stdout).toContain("  gpu0 → gpu1\n")
    expect(run.stdout).toContain("  gpu1 → gpu0\n")
    expect(run.stdout).toContain("to fix: give each device named the P2P flag")
    expect(run.stdout).not.toContain("could not be parked")
  })

  it("migrate --listen --json refuses it before it listens", async () => {
    const run = await runCli("migrate", "--listen", "0", file("blocked.json"), "--json")
    expect(run.exitCode).toBe(1)
    const result = expectRefusal(run.stdout)
    expect(result.role).toBe("destination")
    expect(result.error.side).toBe("destination")
    expect(run.stderr).not.toContain("listening on")
  })

  it("migrate --connect --json refuses it before it connects", async () => {
    const run = await runCli("migrate", "--connect", "127.0.0.1:9", file("blocked.json"), "--json")
    expect(run.exitCode).toBe(1)
    expect(expectRefusal(run.stdout).role).toBe("source")
    expect(run.stderr).not.toContain("cannot reach")
  })
})
