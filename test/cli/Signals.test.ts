/*
 * SIGINT and SIGTERM against the real binary, at seeded points of a run: the command rolls back
 * under the safety rule, prints what it did (the final states, under --json), and exits within
 * the bound; a second signal exits at once, saying what may be left.
 *
 * The points are fractions of a calibration run's duration, so under load a signal may land
 * before the migration starts or after it ends: every outcome is checked for what it must say,
 * and at least one point must land inside the migration.
 */
import { existsSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { seededPoints } from "../../packages/cli/test/SeededPoints.js"
import { type Exited, type Running, sleep, startLockstep, waitFor } from "./Processes.js"

/** README: a signalled command exits within 10 s; the rest is process teardown under load. */
const boundMs = 10_000 + 5_000

const gpu = (id: string, stateSize: number) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: { stateSize, arcLatencyMs: 3 }
})

/** Small frames make a simulation slow in real time (many chunks), so a signal can land inside it. */
const simulation = {
  devices: [gpu("gpu0", 131072), gpu("gpu1", 131072), gpu("gpu2", 131072)],
  topology: "shared-iommu",
  seed: 18,
  p2pWritesPerSecond: 2000,
  migration: { chunkBytes: 64, downtimeLimitMs: 50 }
}

/** A bandwidth limit makes a real migration take seconds of pre-copy. */
const overTcp = {
  devices: [gpu("gpu0", 262144), gpu("gpu1", 262144), { ...gpu("nic0", 65536), flags: ["STOP_COPY", "P2P"] }],
  topology: "shared-iommu",
  seed: 18,
  p2pWritesPerSecond: 2000,
  migration: { bandwidthLimit: 262144, downtimeLimitMs: 50 }
}

let dir = ""
const file = (name: string) => join(dir, name)
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-signals-"))
  await writeFile(file("simulation.json"), JSON.stringify(simulation))
  await writeFile(file("tcp.json"), JSON.stringify(overTcp))
  await writeFile(
    file("slow.json"),
    JSON.stringify({
      ...overTcp,
      devices: overTcp.devices.map((d) => ({ ...d, sim: { ...d.sim, arcLatencyMs: 1000 } })),
      migration: { ...overTcp.migration, arcTimeoutMs: 20_000 }
    })
  )
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const every = (states: Record<string, string>, state: string) => Object.values(states).every((s) => s === state)

/** The one JSON object a --json run prints. */
const jsonOf = (exited: Exited) => {
  const lines = exited.stdout.trim().split("\n")
  expect(lines, exited.stdout + exited.stderr).toHaveLength(1)
  return JSON.parse(lines[0] ?? "")
}

/** Signals `run` at `at` ms after `from`, and answers when it exited and how. */
const signalAt = async (run: Running, signal: NodeJS.Signals, from: number, at: number) => {
  await sleep(Math.max(0, from + at - Date.now()))
  const sent = run.signal(signal)
  const exited = await run.exited
  return { sent, exited, tookMs: exited.at - sent }
}

describe("lockstep simulate, signalled", () => {
  it("rolls back, reports the final states and exits 130 within the bound, wherever SIGINT lands", async () => {
    const start = Date.now()
    const calibration = await startLockstep(["simulate", file("simulation.json"), "--json"]).exited
    expect(calibration.code, calibration.stderr).toBe(0)
    const fullMs = calibration.at - start
    const point = seededPoints(18)
    let inside = 0
    // Two seeded points; on a loaded machine a run's length varies with the load, so that both
    // may miss the migration (before it began, or after it ended): then up to four more.
    for (let i = 0; i < 6 && (i < 2 || inside === 0); i++) {
      const fraction = 0.35 + 0.5 * point()
      const run = startLockstep(["simulate", file("simulation.json"), "--json"])
      const { exited, tookMs } = await signalAt(run, "SIGINT", Date.now(), fraction * fullMs)
      const where = `point ${i} at ${(fraction * 100).toFixed(0)}% of ${fullMs} ms`
      expect(tookMs, where).toBeLessThan(boundMs)
      if (exited.signal === "SIGINT" && exited.stdout === "" && exited.stderr === "") {
        // Killed by the signal itself: it came while node was still starting, before the
        // binary's first line could listen (node's own default; nothing of Lockstep ran).
        continue
      }
      const result = jsonOf(exited)
      if (exited.code === 0) {
        // Done before the signal came: a whole migration.
        expect(result, where).toMatchObject({ ok: true, violations: 0 })
        continue
      }
      expect(exited.code, where).toBe(130)
      expect(exited.stderr, where).toContain("SIGINT")
      if (result.interrupted === undefined) {
        // Before the migration began: nothing was touched.
        expect(result, where).toMatchObject({ ok: false, exitCode: 130, error: { _tag: "Interrupted" } })
        continue
      }
      inside++
      expect(result, where).toMatchObject({ ok: false, interrupted: "SIGINT", violations: 0 })
      // Rolled back (source RUNNING, destination reset and parked in STOP), or committed before
      // the signal (source STOP_COPY, destination RUNNING): never a mix.
      const { source, destination } = result.final
      const rolledBack = every(source, "RUNNING") && every(destination, "STOP")
      const committed = every(source, "STOP_COPY") && every(destination, "RUNNING")
      expect(rolledBack || committed, `${where}: ${JSON.stringify(result.final)}`).toBe(true)
    }
    expect(inside, "no signal landed inside a migration").toBeGreaterThan(0)
  }, 180_000)
})

describe("lockstep migrate, signalled", () => {
  /**
   * Runs both sides over TCP and, at a seeded point once the source's journal exists (the
   * migration has begun), signals `victim` (by default once, with `signal`).
   */
  const migrateAndSignal = async (
    victim: "source" | "destination",
    signal: NodeJS.Signals,
    seed: number,
    send: (run: Running) => Promise<number> = async (run) => run.signal(signal),
    scenario = "tcp.json"
  ) => {
    const journal = file(`journal-${seed}.json`)
    const destination = startLockstep(["migrate", "--listen", "0", "--json", file(scenario)])
    const source = await waitFor(
      "the destination to listen",
      () => /listening on 127\.0\.0\.1:(\d+)/.exec(destination.stderr())?.[1]
    ).then((port) =>
      startLockstep(["migrate", "--connect", `127.0.0.1:${port}`, "--journal", journal, "--json", file(scenario)])
    )
    try {
      await waitFor("the migration to begin", () => (existsSync(journal) ? true : undefined), 60_000)
      await sleep(200 + 800 * seededPoints(seed)())
      const run = victim === "source" ? source : destination
      const sent = await send(run)
      const exited = await run.exited
      const other = await (victim === "source" ? destination : source).exited
      return { signalled: { exited, tookMs: exited.at - sent }, other }
    } finally {
      source.child.kill("SIGKILL")
      destination.child.kill("SIGKILL")
    }
  }

  it("a second signal exits at once, saying what state may be left", async () => {
    // Arcs of a second each: the rollback is still running when the second signal comes.
    const { signalled } = await migrateAndSignal(
      "source",
      "SIGINT",
      3,
      async (source) => {
        source.signal("SIGINT")
        await sleep(300)
        // Another signal, not SIGINT again: two pending SIGINTs may merge into one.
        return source.signal("SIGTERM")
      },
      "slow.json"
    )
    expect(signalled.tookMs).toBeLessThan(3000)
    expect(signalled.exited.code).toBe(143)
    expect(signalled.exited.stderr).toContain("SIGINT: stopping and rolling back (a second signal exits at once)")
    expect(signalled.exited.stderr).toContain(
      "second signal (SIGTERM): exiting at once, without finishing the rollback: the source devices may be left between RUNNING and STOP_COPY"
    )
    expect(signalled.exited.stderr).toContain("may still record the migration as started")
  }, 120_000)

  it("a SIGINT'd source rolls back to RUNNING, says so, exits 130; the destination resets its devices", async () => {
    const { signalled, other } = await migrateAndSignal("source", "SIGINT", 1)
    expect(signalled.tookMs).toBeLessThan(boundMs)
    expect(signalled.exited.code, signalled.exited.stderr).toBe(130)
    expect(signalled.exited.stderr).toContain("SIGINT: stopping and rolling back")
    const source = jsonOf(signalled.exited)
    expect(source).toMatchObject({ ok: false, role: "source", interrupted: "SIGINT", violations: 0 })
    expect(every(source.final, "RUNNING"), JSON.stringify(source.final)).toBe(true)
    expect(other.code, other.stderr).toBe(1)
    const destination = jsonOf(other)
    expect(destination).toMatchObject({ ok: false, role: "destination", violations: 0 })
    expect(every(destination.final, "STOP"), JSON.stringify(destination.final)).toBe(true)
  }, 120_000)

  it("a SIGTERM'd destination resets and parks its devices, exits 143; the source rolls back", async () => {
    const { signalled, other } = await migrateAndSignal("destination", "SIGTERM", 2)
    expect(signalled.tookMs).toBeLessThan(boundMs)
    expect(signalled.exited.code, signalled.exited.stderr).toBe(143)
    const destination = jsonOf(signalled.exited)
    expect(destination).toMatchObject({ ok: false, role: "destination", interrupted: "SIGTERM", violations: 0 })
    expect(every(destination.final, "STOP"), JSON.stringify(destination.final)).toBe(true)
    expect(other.code, other.stderr).toBe(1)
    const source = jsonOf(other)
    expect(source).toMatchObject({ ok: false, role: "source", violations: 0 })
    expect(every(source.final, "RUNNING"), JSON.stringify(source.final)).toBe(true)
  }, 120_000)
})
