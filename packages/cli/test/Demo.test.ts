import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-demo-"))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Runs with stderr taken for a terminal, as the binary sees it in a shell. */
const onTerminal = async <A>(run: () => Promise<A>): Promise<A> => {
  const was = process.stderr.isTTY
  process.stderr.isTTY = true
  try {
    return await run()
  } finally {
    process.stderr.isTTY = was
  }
}

describe("lockstep demo", () => {
  it("migrates the flagship group and says so: phases, downtime, bytes, 0 violations, verified", async () => {
    const r = await runCli("demo")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("migrated 9 devices in")
    expect(r.stdout).toMatch(/ {2}phases: handshake .*, switchover .*, resume /)
    expect(r.stdout).toMatch(/ {2}downtime \d+(\.\d)? ms/)
    expect(r.stdout).toMatch(/ {2}streamed \d+\.\d MiB/)
    expect(r.stdout).toMatch(/\n0 P2P violations among \d+ P2P writes, destination verified\.\n/)
    expect(r.stdout).toContain("npx lockstep demo --timeline demo.svg")
    // Not a terminal: no progress.
    expect(r.stderr).toBe("")
  })

  it("prints only the JSON object with --json, even on a terminal", async () => {
    const r = await onTerminal(() => runCli("demo", "--json"))
    expect(r.exitCode).toBe(0)
    expect(r.stderr).toBe("")
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verified: true, violations: 0 })
  })

  it("shows progress on stderr when it is a terminal: rounds, bytes, estimate", async () => {
    const r = await onTerminal(() => runCli("demo"))
    expect(r.exitCode).toBe(0)
    const lines = r.stderr.trim().split("\n")
    expect(lines[0]).toMatch(/^lockstep: +0\.0 ms {2}handshake done/)
    expect(r.stderr).toMatch(
      /lockstep: +[\d.]+ ms {2}pre-copy round 1: [\d.]+ MiB in [\d.]+ ms \([\d.]+ MiB so far\), downtime estimate [\d.]+ ms \(limit 60 ms\)/
    )
    expect(r.stderr).toContain("switchover (converged)")
    expect(lines.at(-1)).toMatch(/the destination group is RUNNING/)
    expect(r.stdout).not.toContain("lockstep: ")
  })

  it("draws the run with --timeline: both groups' lanes, the phases, the downtime, no violation", async () => {
    const file = join(dir, "demo.svg")
    const r = await runCli("demo", "--timeline", file)
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain(`  timeline: ${file}`)
    const svg = await readFile(file, "utf8")
    expect(svg).toMatch(/^<\?xml/)
    for (const lane of ["src gpu0", "src nic0", "dst gpu7", "dst nic0"]) expect(svg).toContain(`>${lane}<`)
    expect(svg).toMatch(/>downtime [\d.]+ ms</)
    expect(svg).toContain(">round 1<")
    expect(svg).toContain("0 P2P violations")
    // Each group's topology beside its lanes: the GPUs' domain, the NIC's edges into two of them.
    for (const side of ["src", "dst"]) {
      expect(svg).toContain(
        `class="p2p-domain" data-members="${Array.from({ length: 8 }, (_, i) => `${side} gpu${i}`).join(" ")}"`
      )
      expect(svg).toContain(`class="p2p-edges" data-initiator="${side} nic0" data-targets="${side} gpu0 ${side} gpu1"`)
    }
  })

  it("prints its scenario with --print-scenario, a file simulate runs as the demo does", async () => {
    const printed = await runCli("demo", "--print-scenario")
    expect(printed.exitCode).toBe(0)
    const file = join(dir, "scenario.json")
    await writeFile(file, printed.stdout)
    const simulated = await runCli("simulate", file, "--json")
    const demo = await runCli("demo", "--json")
    expect(simulated.stdout).toBe(demo.stdout)
  })

  it("explains a timeline it cannot write, with the fix, and exits 2", async () => {
    const r = await runCli("demo", "--timeline", join(dir, "no-such-dir", "demo.svg"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(
      /^lockstep: --timeline: cannot write .*no-such-dir.*; name a file in a directory you can write to\n$/
    )
  })

  it("has complete help, and the top-level help lists it", async () => {
    const help = await runCli("demo", "--help")
    expect(help.exitCode).toBe(0)
    for (const flag of ["--json", "--timeline", "--events", "--otlp", "--print-scenario"])
      expect(help.stdout).toContain(flag)
    const top = await runCli("--help")
    expect(top.stdout).toMatch(/demo +Run the flagship example/)
  })
})

describe("lockstep simulate", () => {
  it("refuses a group that is not migratable before touching anything, and says what to do", async () => {
    const file = join(dir, "blocked.json")
    await writeFile(
      file,
      JSON.stringify({
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
          { id: "nic0", kind: "pci", flags: ["STOP_COPY"] }
        ],
        topology: { edges: [["nic0", "gpu0"]] }
      })
    )
    const r = await runCli("simulate", file)
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toMatch(
      /^migration refused before anything was touched: the source group is not migratable\n.*\n {2}nic0 → gpu0\n/
    )
    expect(r.stdout).toContain(`to fix: give each device named the P2P flag`)
    expect(r.stdout).toContain(`(lockstep check ${file} shows the same report)`)
  })

  it("says where to start when the scenario file does not exist", async () => {
    const r = await runCli("simulate", join(dir, "missing.json"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain(
      "missing.json: no such scenario file; give the path of one (lockstep demo --print-scenario"
    )
  })
})
