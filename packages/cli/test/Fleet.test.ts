import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, relative } from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

const dir = mkdtempSync(join(tmpdir(), "cli-fleet-"))
/** State directories of runs that start simulated hosts: their process is stopped if a run left it. */
const states: Array<string> = []
afterAll(() => {
  for (const state of states) {
    const pid = join(state, "hosts.pid")
    if (!existsSync(pid)) continue
    try {
      process.kill(Number(readFileSync(pid, "utf8")), "SIGTERM")
    } catch (e) {
      // Gone already (killed without removing its pid file): nothing to stop.
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e
    }
  }
  rmSync(dir, { recursive: true, force: true })
})
const file = (name: string, doc: unknown) => {
  const path = join(dir, name)
  writeFileSync(path, typeof doc === "string" ? doc : JSON.stringify(doc))
  return path
}
const gpu = (id: string) => ({ id, kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 4096 } })
const stateDir = (name: string) => {
  const state = join(dir, name)
  states.push(state)
  return state
}

/** Runs `f` with stderr taken for a terminal, as the commands decide whether to draw progress. */
const onTerminal = async <A>(f: () => Promise<A>): Promise<A> => {
  const was = process.stderr.isTTY
  process.stderr.isTTY = true
  try {
    return await f()
  } finally {
    process.stderr.isTTY = was
  }
}

/**
 * The steps a VM's progress line can show: reserving its destination, attaching its devices,
 * recovering what an earlier run left, then the migration's phases (`@lockstep/migration` Phase).
 */
const phases = [
  "reserving",
  "attach",
  "recover",
  "handshake",
  "prepare",
  "precopy",
  "switchover",
  "drain",
  "validate",
  "commit",
  "resume"
]

/** Each drawing of the progress display: what `\x1b[NF\x1b[J` (up N lines, clear below) redraws over. */
const drawings = (stderr: string) => {
  const esc = String.fromCharCode(0x1b)
  const parts = stderr.split(new RegExp(`${esc}\\[(\\d+)F${esc}\\[J`))
  return parts.flatMap((text, i) =>
    i % 2 === 0 ? [{ up: i === 0 ? 0 : Number(parts[i - 1]), lines: text.split("\n").filter((l) => l !== "") }] : []
  )
}

describe("lockstep fleet", () => {
  it("an invalid fleet file: every problem with its path, exit 2, nothing started", async () => {
    const bad = file("bad.json", {
      hosts: [{ name: "a", nicBandwidth: 0, capacity: 4 }],
      vms: [{ name: "vm1", host: "z", group: { devices: [gpu("g0")] } }],
      evacuate: "a"
    })
    const r = await runCli("fleet", "evacuate", bad, "--state", join(dir, "st-bad"))
    expect(r.exitCode).toBe(2)
    // nicBandwidth is bytes per second each way: a host without any cannot take a migration.
    expect(r.stderr).toContain(`${bad}: hosts[0].nicBandwidth: expected a value greater than 0, got 0`)
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

  it("--timeline draws one lane per VM with its outcome; --json on a terminal prints no progress", async () => {
    // Two VMs leave a: "fine" migrates, "failing" cannot (its g1 fails PRE_COPY_P2P → STOP_COPY)
    // and is rolled back.
    const failing = {
      ...gpu("g1"),
      sim: { stateSize: 4096, faults: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY" }] }
    }
    const vms = [
      { name: "fine", host: "a", group: { devices: [gpu("g0"), gpu("g1")] } },
      { name: "failing", host: "a", group: { devices: [gpu("g0"), failing] }, to: "b" }
    ]
    const expected: Record<string, string> = { fine: "migrated", failing: "rolled-back" }
    const fleet = file("timeline.json", {
      hosts: [
        { name: "a", nicBandwidth: 16 * 1024 * 1024, capacity: 8 },
        { name: "b", nicBandwidth: 16 * 1024 * 1024, capacity: 8 }
      ],
      vms,
      evacuate: "a"
    })
    const svg = join(dir, "evacuation.svg")
    const r = await onTerminal(() =>
      runCli("fleet", "evacuate", fleet, "--json", "--timeline", svg, "--state", stateDir("st-t"))
    )
    expect(r.exitCode, r.stderr).toBe(1)
    expect(r.stderr).not.toContain("\x1b[")
    expect(r.stderr).not.toContain("evacuating a:")
    const json = JSON.parse(r.stdout) as { violations: number; vms: ReadonlyArray<{ vm: string; outcome: string }> }
    expect(json.violations).toBe(0)
    expect(Object.fromEntries(json.vms.map((v) => [v.vm, v.outcome]))).toEqual(expected)
    const picture = readFileSync(svg, "utf8")
    // A standalone SVG document.
    expect(picture).toMatch(/^(<\?xml [^>]*>\s*)?<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    expect(picture.trimEnd().endsWith("</svg>")).toBe(true)
    const lanes = picture.split(/(?=<g [^>]*class="lane")/).slice(1)
    const outcomes = Object.fromEntries(
      lanes.map((lane) => [
        /data-vm="([^"]+)"/.exec(lane)?.[1],
        /<text [^>]*class="outcome"[^>]*>([^<]+)</.exec(lane)?.[1]
      ])
    )
    expect(lanes).toHaveLength(vms.length)
    expect(outcomes).toEqual(expected)
  }, 120_000)

  it("--timeline with a name not ending in .svg is refused before anything starts (exit 2)", async () => {
    const fleet = file("png.json", {
      hosts: [
        { name: "a", nicBandwidth: 1000, capacity: 4 },
        { name: "b", nicBandwidth: 1000, capacity: 4 }
      ],
      vms: [{ name: "vm1", host: "a", group: { devices: [gpu("g0")] } }],
      evacuate: "a"
    })
    const state = stateDir("st-png")
    const r = await runCli("fleet", "evacuate", fleet, "--timeline", join(dir, "evacuation.png"), "--state", state)
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain("evacuation.png: the timeline is an SVG picture, so name a file ending in .svg")
    expect(existsSync(state)).toBe(false)
  })

  it("on a terminal, redraws a progress line for each VM under way with its phase on stderr", async () => {
    // Slow NICs (the VMs' 1 MiB leave a at 256 KiB/s): each VM is under way for seconds, over many drawings.
    const vms = ["vm1", "vm2"].map((name) => ({
      name,
      host: "a",
      group: {
        devices: ["g0", "g1"].map((id) => ({ ...gpu(id), sim: { stateSize: 256 * 1024, dirtyBytesPerSecond: 0 } }))
      }
    }))
    const fleet = file("progress.json", {
      hosts: ["a", "b", "c"].map((name) => ({ name, nicBandwidth: 256 * 1024, capacity: 8 })),
      vms,
      evacuate: "a"
    })
    const r = await onTerminal(() => runCli("fleet", "evacuate", fleet, "--state", stateDir("st-p")))
    expect(r.exitCode, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^P2P violations: 0 among \d+ P2P writes/m)
    const drawn = drawings(r.stderr).filter((d) => d.lines[0]?.startsWith("evacuating a: "))
    expect(drawn.length).toBeGreaterThan(1)
    // Each drawing goes up over exactly the lines of the one before.
    for (const [i, d] of drawn.entries()) expect(d.up).toBe(i === 0 ? 0 : drawn[i - 1]?.lines.length)
    const lines = drawn.flatMap((d) => d.lines.slice(1))
    for (const { name } of vms) {
      const seen = lines.flatMap((l) => {
        const m = new RegExp(`^ {2}${name} → [bc] {2}(\\S+)`).exec(l)
        return m?.[1] === undefined ? [] : [m[1]]
      })
      expect(seen.length, name).toBeGreaterThan(0)
      for (const phase of seen) expect(phases, `${name}: ${phase}`).toContain(phase)
    }
  }, 120_000)

  it("status without any evacuation says so (exit 1)", async () => {
    const r = await runCli("fleet", "status", "--state", join(dir, "st-empty"))
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain("no evacuation is recorded yet")
  })
})
