/*
 * A failed migration as `simulate --json` prints it: `error.message` is a sentence for a person
 * (one line; no stack trace, no source path, no file:// URL), and the cause is structured in
 * fields of its own. The scenario is the issue's: the quarantine ERROR policy and a GPU failing
 * into ERROR as it quiesces. By DESIGN §2 the ERROR device is left for diagnosis and every other
 * source device runs again (the kernel refuses any request from ERROR, so it must not be part
 * of the rollback's plan); the destination is reset and parked in STOP (the failing GPU was on
 * the source: no destination device is in ERROR).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

let dir = ""
const file = (name: string) => join(dir, name)

const gpu = (id: string) => ({ id, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 65536 } })

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-failure-"))
  await writeFile(
    file("quarantine.json"),
    JSON.stringify({
      devices: [gpu("gpu0"), gpu("gpu1")],
      topology: "shared-iommu",
      faults: { source: { gpu1: [{ _tag: "FailArc", from: "PRE_COPY", to: "PRE_COPY_P2P", leaveIn: "error" }] } },
      migration: { errorPolicy: "quarantine" }
    })
  )
  await writeFile(
    file("read-fails.json"),
    JSON.stringify({
      devices: [gpu("gpu0"), gpu("gpu1"), gpu("gpu2")],
      faults: { source: { gpu1: [{ _tag: "FailRead", code: "EIO" }] } }
    })
  )
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const aSentence = (message: string) => {
  expect(message).not.toContain("\n")
  expect(message).not.toMatch(/\bat .*:\d+:\d+/)
  expect(message).not.toContain("file://")
  expect(message).not.toMatch(/(^|[\s(])\/[\w.-]+\//)
}

describe("a failed migration's report", () => {
  it("--json: the message is a sentence, the cause has fields of its own, the recovery is as the policy requires", async () => {
    const run = await runCli("simulate", file("quarantine.json"), "--json")
    expect(run.exitCode).toBe(1)
    const result = JSON.parse(run.stdout)
    aSentence(result.error.message)
    expect(result.error.message).not.toContain("recovery incomplete")
    expect(result.error).toMatchObject({
      _tag: "MigrationFailed",
      side: "source",
      phase: "switchover",
      origin: "source",
      touched: true,
      recovered: true,
      quarantined: ["gpu1"],
      cause: {
        _tag: "TransitionFailed",
        device: "gpu1",
        arc: { from: "PRE_COPY", to: "PRE_COPY_P2P" },
        cause: {
          _tag: "DeviceError",
          reason: { _tag: "ArcFailed", device: "gpu1", code: "EIO", stateAfter: "ERROR" }
        }
      }
    })
    expect(result.final).toEqual({
      source: { gpu0: "RUNNING", gpu1: "ERROR" },
      destination: { gpu0: "STOP", gpu1: "STOP" }
    })
  })

  it("in words: each side's recovery, the quarantined device named", async () => {
    const run = await runCli("simulate", file("quarantine.json"))
    expect(run.exitCode).toBe(1)
    const recovery = run.stdout.split("\n").find((line) => line.startsWith("  recovery: ")) ?? ""
    expect(recovery).toBe(
      "  recovery: the source group is back in RUNNING, except gpu1 left in ERROR for diagnosis (quarantine policy); the destination devices were reset and parked in STOP"
    )
    for (const line of run.stdout.split("\n")) aSentence(line)
  })

  it("migrate --local --json: a device's refusal names the device, its errno and the reason's tag", async () => {
    // The fault plan's own terms: gpu1's first read in a saving state fails with EIO, which the
    // Device port reports as a SessionFailed reason of a DeviceError (the first read is pre-copy's).
    const run = await runCli("migrate", "--local", file("read-fails.json"), "--json")
    expect(run.exitCode).toBe(1)
    const result = JSON.parse(run.stdout)
    aSentence(result.error.message)
    expect(result.error).toMatchObject({
      _tag: "MigrationFailed",
      side: "source",
      phase: "precopy",
      origin: "source",
      cause: "SessionFailed",
      device: "gpu1",
      code: "EIO"
    })
    expect(result.violations).toBe(0)
    expect(result.final).toEqual({
      source: { gpu0: "RUNNING", gpu1: "RUNNING", gpu2: "RUNNING" },
      destination: { gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" }
    })
  })
})
