import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-scenario-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const gpu = (id: string, sim: Record<string, unknown> = {}) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 65536, ...sim }
})

const simulate = async (name: string, doc: unknown, ...flags: ReadonlyArray<string>) => {
  const file = join(dir, name)
  await writeFile(file, JSON.stringify(doc))
  return { file, run: await runCli("simulate", file, ...flags) }
}

describe("lockstep simulate: scenario keys", () => {
  it("refuses misspelt keys in a device and in its sim block, each with its path, all in one report", async () => {
    const { file, run } = await simulate("misspelt.json", {
      devices: [
        gpu("gpu0", { arcLatencyMS: 4 }),
        { ...gpu("gpu1"), simm: { stateSize: 1 } },
        gpu("gpu2", { dirtyBytesPerSecnd: 10 })
      ],
      destination: { sim: { gpu1: { stateSze: 4096 } } }
    })
    expect(run.exitCode).toBe(2)
    expect(run.stdout).toBe("")
    expect(run.stderr).toBe(
      [
        `lockstep: ${file}: not a valid scenario:`,
        "  devices[0].sim.arcLatencyMS: unexpected key",
        "  devices[1].simm: unexpected key; a device has id, kind, flags, sim, vfioUser, vfio",
        "  devices[2].sim.dirtyBytesPerSecnd: unexpected key",
        "  destination.sim.gpu1.stateSze: unexpected key",
        ""
      ].join("\n")
    )
  })

  it("refuses a pre-copy part larger than the state, with the path", async () => {
    const { run } = await simulate("precopy.json", {
      devices: [gpu("gpu0", { precopyInitialBytes: 65537 }), { ...gpu("gpu1"), sim: { precopyInitialBytes: 2 ** 21 } }]
    })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain(
      "  devices[0].sim.precopyInitialBytes: 65537 is larger than the state (stateSize 65536); it is the part of the state pre-copy can move, at most stateSize\n"
    )
    // Without a stateSize the default one (1 MiB) is the whole state.
    expect(run.stderr).toContain(
      `  devices[1].sim.precopyInitialBytes: ${2 ** 21} is larger than the state (stateSize ${2 ** 20}, the default)`
    )
  })

  it("reports the group's problems and the scenario's together", async () => {
    const { run } = await simulate("both.json", {
      devices: [gpu("gpu0"), { ...gpu("gpu0"), kind: "gpu" }],
      migration: { downtimeLimitMS: 5 }
    })
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain("  migration.downtimeLimitMS: unexpected key\n")
    expect(run.stderr).toContain('  devices[1].kind: unknown kind "gpu"')
    expect(run.stderr).toContain('  devices[1].id: duplicate id "gpu0", already used by devices[0]')
  })

  it("agrees in number: one device, one round", async () => {
    const { run } = await simulate("one.json", {
      devices: [gpu("gpu0")],
      migration: { precopy: false }
    })
    expect(run.exitCode, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/^migrated 1 device in 0 pre-copy rounds \(/)
  })
})

describe("lockstep simulate: any string is a device id", () => {
  // Names Object.prototype answers to: a record keyed by device id must not mistake them.
  const ids = ["__proto__", "constructor", "toString"]
  const group = (flags: ReadonlyArray<string>) => ({
    devices: ids.map((id) => ({ id, kind: "pci", flags, sim: { stateSize: 65536 } })),
    topology: {
      edges: [
        ["__proto__", "constructor"],
        ["constructor", "toString"]
      ]
    }
  })
  const everyone = (state: string) => Object.fromEntries(ids.map((id) => [id, state]))

  it("migrates devices named __proto__, constructor and toString, P2P-safe and verified", async () => {
    const { run } = await simulate("proto-names.json", group(["STOP_COPY", "P2P", "PRE_COPY"]), "--json")
    expect(run.exitCode, run.stderr).toBe(0)
    const report = JSON.parse(run.stdout)
    expect(report).toMatchObject({ ok: true, verified: true, violations: 0 })
    expect(report.final.destination).toEqual(everyone("RUNNING"))
  })

  it("rolls them all back when one of them fails an arc: the source runs, the destination is parked", async () => {
    const { run } = await simulate(
      "proto-names-fault.json",
      {
        ...group(["STOP_COPY", "P2P"]),
        faults: { source: { constructor: [{ _tag: "FailArc", from: "RUNNING", to: "RUNNING_P2P" }] } }
      },
      "--json"
    )
    expect(run.exitCode).toBe(1)
    const report = JSON.parse(run.stdout)
    expect(report).toMatchObject({ ok: false, violations: 0, error: { recovered: true } })
    expect(report.error.cause.device).toBe("constructor")
    // DESIGN.md: a failed migration leaves the source group running and the destination in STOP.
    expect(report.final).toEqual({ source: everyone("RUNNING"), destination: everyone("STOP") })
  })
})

describe("lockstep simulate: the scenario file itself", () => {
  it("refuses a file that is not JSON, naming it and where the parser stopped", async () => {
    const file = join(dir, "truncated.json")
    // `{"devices"` is 10 characters and a space: the `[` at character 11 stands where a ':' was due.
    await writeFile(file, '{"devices" []}')
    const run = await runCli("simulate", file)
    expect(run.exitCode).toBe(2)
    expect(run.stderr.startsWith(`lockstep: ${file}: the scenario file is not valid JSON: `)).toBe(true)
    expect(run.stderr).toContain("position 11")
  })

  it("refuses a directory given as the scenario file", async () => {
    const run = await runCli("simulate", dir)
    expect(run.exitCode).toBe(2)
    expect(run.stderr.startsWith(`lockstep: ${dir}: cannot read the scenario file: `)).toBe(true)
    expect(run.stderr).toContain("EISDIR")
  })
})
