import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

const dir = mkdtempSync(join(tmpdir(), "cli-fleet-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const file = (name: string, doc: unknown) => {
  const path = join(dir, name)
  writeFileSync(path, typeof doc === "string" ? doc : JSON.stringify(doc))
  return path
}
const gpu = (id: string) => ({ id, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 4096 } })

describe("lockstep fleet", () => {
  it("an invalid fleet file: every problem with its path, exit 2, nothing started", async () => {
    const bad = file("bad.json", {
      hosts: [{ name: "a", nicBandwidth: 0, capacity: 4 }],
      vms: [{ name: "vm1", host: "z", group: { devices: [gpu("g0")] } }],
      evacuate: "a"
    })
    const r = await runCli("fleet", "evacuate", bad, "--state", join(dir, "st-bad"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain("hosts[0].nicBandwidth: Expected a value greater than 0")
    expect(r.stderr.split("\n")[0]).toMatch(/^lockstep: /)
    const notJson = await runCli("fleet", "evacuate", file("nope.json", "{"), "--state", join(dir, "st-bad"))
    expect(notJson.exitCode).toBe(2)
    expect(notJson.stderr).toContain("not valid JSON")
  })

  it("a host that does not answer: named with what to start, exit 1, nothing moved", async () => {
    const fleet = file("unreachable.json", {
      hosts: [
        { name: "a", nicBandwidth: 1000, capacity: 4, control: join(dir, "a-control") },
        { name: "b", nicBandwidth: 1000, capacity: 4, control: join(dir, "b-control") }
      ],
      vms: [{ name: "vm1", host: "a", group: { devices: [gpu("g0")] } }],
      evacuate: "a"
    })
    const r = await runCli("fleet", "evacuate", fleet, "--state", join(dir, "st-u"))
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain("host a is unreachable")
    expect(r.stderr).toContain("start it (lockstep fleet hosts FLEET.json --host a)")
    expect(r.stderr).toContain("Nothing was moved.")
    expect(r.stderr).toContain(relative(process.cwd(), join(dir, "a-control")))
  })

  it("status without any evacuation says so (exit 1)", async () => {
    const r = await runCli("fleet", "status", "--state", join(dir, "st-empty"))
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain("no evacuation is recorded yet")
  })
})
