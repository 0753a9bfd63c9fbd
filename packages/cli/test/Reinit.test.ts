import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

/*
 * The 2026 uAPI's pre-copy re-initialisation as a scenario sets it: `sim.precopyInfoV2` (the
 * device takes the opt-in) and `sim.reinitAtQuery` (its pre-copy info query that reports REINIT).
 */

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-reinit-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

/** 1 MiB of state in 4 KiB pages: 256 page records of a 12-byte header and the page. */
const gpu = (id: string, sim: Record<string, unknown> = {}) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 1 << 20, arcLatencyMs: 2, ...sim }
})
const pageRecords = 256 * (12 + 4096)

const simulate = async (name: string, gpu1: Record<string, unknown>, ...flags: ReadonlyArray<string>) => {
  const file = join(dir, name)
  await writeFile(
    file,
    JSON.stringify({
      devices: [gpu("gpu0"), gpu("gpu1", gpu1)],
      topology: "shared-iommu",
      migration: { downtimeLimitMs: 60, bandwidthLimit: 125_000_000 }
    })
  )
  return runCli("simulate", file, ...flags)
}

describe("lockstep simulate: pre-copy re-initialisation", () => {
  it("a device that re-initialises in round 2 sends its whole pre-copy portion again; the run says so", async () => {
    // Round 1 asks twice (before its reads, and after, to send the initial-data marker): query 3 opens round 2.
    const text = await simulate("reinit.json", { precopyInfoV2: true, reinitAtQuery: 3 })
    expect(text.exitCode).toBe(0)
    expect(text.stdout).toContain("re-initialised in pre-copy (REINIT): gpu1 in round 2 (1.0 MiB new initial data)")
    expect(text.stdout).toContain("P2P violations: 0")
    const json = JSON.parse((await simulate("reinit.json", { precopyInfoV2: true, reinitAtQuery: 3 }, "--json")).stdout)
    expect(json).toMatchObject({
      ok: true,
      verified: true,
      violations: 0,
      reinitialised: [{ device: "gpu1", round: 2, initialBytes: pageRecords }]
    })
  })

  it("without the opt-in, reinitAtQuery does nothing", async () => {
    const json = JSON.parse((await simulate("declined.json", { reinitAtQuery: 3 }, "--json")).stdout)
    expect(json).toMatchObject({ ok: true, verified: true, violations: 0 })
    expect(json.reinitialised).toBeUndefined()
  })

  it("refuses a reinitAtQuery below 1, with its path", async () => {
    const run = await simulate("bad.json", { precopyInfoV2: true, reinitAtQuery: 0 })
    expect(run.exitCode).not.toBe(0)
    expect(run.stderr).toContain("reinitAtQuery")
  })
})
