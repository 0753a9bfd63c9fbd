import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { fixture } from "./fixtures.js"
import { runCli } from "./runCli.js"

describe("lockstep check --json", () => {
  it("prints exactly the verdict of a migratable group and exits 0", async () => {
    const r = await runCli("check", fixture("two-gpus.json"), "--json")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toBe('{"migratable":true,"blockers":[]}\n')
    expect(r.stderr).toBe("")
  })

  it("names each blocker with its device, edges and reason, and still exits 0", async () => {
    const r = await runCli("check", fixture("nic-without-p2p.json"), "--json")
    expect(r.exitCode).toBe(0)
    expect(r.stdout.trim().split("\n")).toHaveLength(1)
    const report = JSON.parse(r.stdout)
    expect(Object.keys(report)).toEqual(["migratable", "blockers"])
    expect(report).toEqual({
      migratable: false,
      blockers: [{ device: "nic0", edges: [["nic0", "gpu0"]], reason: expect.stringContaining("does not support P2P") }]
    })
    expect(Object.keys(report.blockers[0])).toEqual(["device", "edges", "reason"])
  })
})

describe("lockstep check", () => {
  it("prints a readable verdict with each blocker and QEMU's judgement", async () => {
    const r = await runCli("check", fixture("nic-without-p2p.json"))
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/^not migratable \(3 devices, 1 P2P edge\): 1 device may write into peers/)
    expect(r.stdout).toContain("  nic0 → gpu0\n    nic0 may write into 1 device (gpu0) but does not support P2P")
    expect(r.stdout).toMatch(/QEMU's rule .*: blocks this group\n$/)
  })

  it("says when QEMU would block a group that is migratable (a target without P2P)", async () => {
    const r = await runCli("check", fixture("target-without-p2p.json"))
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toMatch(/^migratable \(2 devices, 1 P2P edge\)/)
    expect(r.stdout).toMatch(/QEMU's rule .*: blocks this group/)
  })

  it("says when QEMU would allow the group too", async () => {
    const r = await runCli("check", fixture("two-gpus.json"))
    expect(r.stdout).toMatch(/^migratable \(2 devices, 2 P2P edges\)/)
    expect(r.stdout).toMatch(/QEMU's rule .*: allows this group/)
  })
})

describe("lockstep check on invalid input", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-check-"))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it("lists every problem of an invalid group with its JSON path and exits 2, printing nothing on stdout", async () => {
    const file = fixture("duplicate-id.json")
    const r = await runCli("check", file, "--json")
    expect(r.exitCode).toBe(2)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain(`${file}: devices[1].id: duplicate id "gpu0", already used by devices[0]`)
    expect(r.stderr).toContain(`${file}: devices[1].flags: "gpu0" does not support STOP_COPY`)
  })

  it("explains an unknown kind", async () => {
    const r = await runCli("check", fixture("unknown-kind.json"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('devices[0].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap')
  })

  it("refuses a missing file", async () => {
    const r = await runCli("check", join(dir, "missing.json"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toBe(`lockstep: ${join(dir, "missing.json")}: no such group file\n`)
  })

  it("refuses a file that is not JSON", async () => {
    const file = join(dir, "group.json")
    await writeFile(file, "devices: [gpu0]\n")
    const r = await runCli("check", file)
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain(`${file}: the group file is not valid JSON`)
  })
})
