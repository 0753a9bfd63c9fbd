/*
 * `lockstep simulate` interrupted in process at seeded points of its progress (after the k-th
 * progress line, k drawn from a seed): both sides roll back under the safety rule (or, past the
 * commit, the migration stands), the report says so with the final states, no P2P write landed
 * in a halted device, and the exit code is 130. The points are events of a virtual-time run, so
 * each seed replays exactly.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeSignals } from "../src/Signals.js"
import { runCli, runCliWith } from "./runCli.js"
import { seededPoints } from "./SeededPoints.js"

const gpu = (id: string) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize: 262144, arcLatencyMs: 3, dirtyBytesPerSecond: 1048576 }
})

const scenario = {
  devices: [gpu("gpu0"), gpu("gpu1"), gpu("gpu2"), { ...gpu("nic0"), flags: ["STOP_COPY", "P2P"] }],
  topology: "shared-iommu",
  seed: 3,
  p2pWritesPerSecond: 4000,
  migration: { downtimeLimitMs: 100, maxRounds: 4, bandwidthLimit: 16777216 }
}

let file = ""
let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-interrupt-"))
  file = join(dir, "scenario.json")
  await writeFile(file, JSON.stringify(scenario))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

/** Runs with stderr taken for a terminal, so that progress lines are printed. */
const onTerminal = async <A>(run: () => Promise<A>): Promise<A> => {
  const was = process.stderr.isTTY
  process.stderr.isTTY = true
  try {
    return await run()
  } finally {
    process.stderr.isTTY = was
  }
}

const progressLines = (stderr: string) => stderr.split("\n").filter((l) => /^lockstep: +\d+(\.\d)? ms {2}/.test(l))

/** `  source:      gpu0 RUNNING, gpu1 RUNNING` → `{gpu0: "RUNNING", gpu1: "RUNNING"}`. */
const statesOn = (stdout: string, side: "source" | "destination"): Record<string, string> => {
  const line = stdout.split("\n").find((l) => l.startsWith(`  ${side}:`)) ?? ""
  return Object.fromEntries(
    line
      .slice(line.indexOf(":") + 1)
      .split(",")
      .map((pair) => pair.trim().split(" "))
  )
}

const every = (states: Record<string, string>, state: string) =>
  Object.keys(states).length === 4 && Object.values(states).every((s) => s === state)

describe("lockstep simulate, interrupted at seeded points", () => {
  it("rolls both sides back (or, past the commit, keeps the migration), says so, and exits 130", async () => {
    const full = await onTerminal(() => runCli("simulate", file))
    expect(full.exitCode, full.stderr).toBe(0)
    const steps = progressLines(full.stderr).length
    expect(steps, full.stderr).toBeGreaterThan(4)
    const point = seededPoints(18)
    const phases = new Set<string>()
    for (let i = 0; i < 6; i++) {
      // Signal as the k-th progress line is printed: somewhere from the handshake to the resume.
      const k = 1 + Math.floor(point() * (steps - 1))
      const manual = await Effect.runPromise(makeSignals())
      let seen = 0
      const r = await onTerminal(() =>
        runCliWith(
          {
            signals: manual.signals,
            onStderr: (text) => {
              seen += progressLines(text).length
              if (seen >= k) manual.send("SIGINT")
            }
          },
          "simulate",
          file
        )
      )
      const where = `signal at progress line ${k} of ${steps}`
      expect(r.exitCode, `${where}\n${r.stdout}${r.stderr}`).toBe(130)
      const head = /^interrupted by SIGINT in (\w+): the migration was cancelled\n/.exec(r.stdout)
      expect(head, `${where}\n${r.stdout}`).not.toBeNull()
      phases.add(head?.[1] ?? "")
      expect(r.stdout, where).toMatch(/\n {2}P2P violations: 0 \(source 0, destination 0\)/)
      const source = statesOn(r.stdout, "source")
      const destination = statesOn(r.stdout, "destination")
      const rolledBack = every(source, "RUNNING") && every(destination, "STOP")
      const committed = every(source, "STOP_COPY") && every(destination, "RUNNING")
      expect(rolledBack || committed, `${where}\n${r.stdout}`).toBe(true)
      if (rolledBack)
        expect(r.stdout, where).toContain(
          "  recovery: the source group is back in RUNNING; the destination devices were reset and parked in STOP\n"
        )
    }
    // The seed spreads the points over more than one phase.
    expect(phases.size, [...phases].join()).toBeGreaterThan(1)
  })
})
