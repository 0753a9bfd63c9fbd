import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { fixture } from "./fixtures.js"
import { runCli } from "./runCli.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-check-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

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
      blockers: [
        {
          device: "nic0",
          edges: [["nic0", "gpu0"]],
          omittedEdges: 0,
          reason: expect.stringContaining("does not support P2P")
        }
      ]
    })
    expect(Object.keys(report.blockers[0])).toEqual(["device", "edges", "omittedEdges", "reason"])
  })

  it("says how many edges a blocker leaves out of its list", async () => {
    // 20 PCI devices in one IOMMU: the one without P2P may write into the 19 others.
    const file = join(dir, "clique-20.json")
    const devices = Array.from({ length: 20 }, (_, i) => ({
      id: `gpu${i}`,
      kind: "pci",
      flags: i === 0 ? ["STOP_COPY"] : ["STOP_COPY", "P2P"]
    }))
    await writeFile(file, JSON.stringify({ devices, topology: "shared-iommu" }))
    const r = await runCli("check", file, "--json")
    const [blocker] = JSON.parse(r.stdout).blockers
    expect(blocker.device).toBe("gpu0")
    expect(blocker.edges.length + blocker.omittedEdges).toBe(19)
    expect(blocker.omittedEdges).toBeGreaterThan(0)
    for (const [from, to] of blocker.edges) expect([from, devices.some((d) => d.id === to)]).toEqual(["gpu0", true])
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
  it("lists every problem of an invalid group with its JSON path and exits 2, and a JSON error under --json", async () => {
    const file = fixture("duplicate-id.json")
    const r = await runCli("check", file, "--json")
    expect(r.exitCode).toBe(2)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, exitCode: 2, error: { _tag: "InvalidInput" } })
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
