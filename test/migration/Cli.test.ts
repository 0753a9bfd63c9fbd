/*
 * The CLI: `lockstep simulate` in process (its JSON shape, its exit codes), and `lockstep migrate`
 * as two processes of the built binary talking mutual TLS over TCP loopback.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCli } from "../../packages/cli/test/runCli.js"
import { makeCertificates } from "../../packages/stream/test/Certificates.js"

const scenario = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 131072, arcLatencyMs: 3 } },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 131072, arcLatencyMs: 3 } },
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"], sim: { stateSize: 16384, arcLatencyMs: 1 } }
  ],
  topology: "shared-iommu",
  seed: 11,
  p2pWritesPerSecond: 2000,
  migration: { downtimeLimitMs: 100, bandwidthLimit: 16777216 }
}

let dir = ""
const file = (name: string) => join(dir, name)
const writeScenario = (name: string, doc: unknown) => writeFile(file(name), JSON.stringify(doc))

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-cli-migration-"))
  await writeScenario("ok.json", scenario)
  await writeScenario("fault.json", {
    ...scenario,
    faults: { destination: { gpu1: [{ _tag: "FailArc", from: "STOP", to: "RUNNING_P2P", times: "always" }] } }
  })
  await writeScenario("typo.json", { ...scenario, migration: { downtimeLimitMS: 5 } })
  await writeScenario("ghost.json", { ...scenario, faults: { source: { gpu7: [{ _tag: "FailRead" }] } } })
})
afterAll(() => rm(dir, { recursive: true, force: true }))

describe("lockstep simulate", () => {
  it("--json prints exactly one object of the documented shape, the same on every run", async () => {
    const run = await runCli("simulate", file("ok.json"), "--json")
    expect(run.exitCode).toBe(0)
    expect(run.stdout.trim().split("\n")).toHaveLength(1)
    const result = JSON.parse(run.stdout)
    expect(Object.keys(result)).toEqual(["ok", "verified", "violations", "downtimeMs", "rounds", "bytes", "final"])
    expect(result).toMatchObject({
      ok: true,
      verified: true,
      violations: 0,
      final: {
        source: { gpu0: "STOP_COPY", gpu1: "STOP_COPY", nic0: "STOP_COPY" },
        destination: { gpu0: "RUNNING", gpu1: "RUNNING", nic0: "RUNNING" }
      }
    })
    expect(result.downtimeMs).toBeGreaterThan(0)
    expect(result.rounds).toBeGreaterThanOrEqual(1)
    expect(result.bytes).toBeGreaterThanOrEqual(2 * 131072 + 16384)
    // Virtual time: the figures are deterministic.
    expect((await runCli("simulate", file("ok.json"), "--json")).stdout).toBe(run.stdout)
  })

  it("prints a readable summary without --json", async () => {
    const run = await runCli("simulate", file("ok.json"))
    expect(run.exitCode).toBe(0)
    expect(run.stdout).toMatch(/^migrated 3 devices in \d+ pre-copy rounds? \(switchover: \w+\)\n/)
    expect(run.stdout).toContain("verified: every destination device equals its source byte for byte")
    expect(run.stdout).toContain("P2P violations: 0")
  })

  it("a failed migration exits 1 with ok false, the typed error and the rollback", async () => {
    const run = await runCli("simulate", file("fault.json"), "--json")
    expect(run.exitCode).toBe(1)
    const result = JSON.parse(run.stdout)
    expect(result).toMatchObject({
      ok: false,
      error: {
        _tag: "MigrationFailed",
        phase: "resume",
        origin: "destination",
        cause: {
          _tag: "PeerAborted",
          peer: "destination",
          cause: { _tag: "UnknownPeerCause", tag: "ResumeIncomplete" }
        },
        touched: true,
        recovered: true
      },
      violations: 0,
      final: {
        source: { gpu0: "RUNNING", gpu1: "RUNNING", nic0: "RUNNING" },
        destination: { gpu0: "STOP", gpu1: "STOP", nic0: "STOP" }
      }
    })
    expect(result.error.message).toContain("STOP → RUNNING_P2P")
  })

  it("invalid input exits 2 and says what is wrong", async () => {
    const typo = await runCli("simulate", file("typo.json"), "--json")
    expect(typo.exitCode).toBe(2)
    expect(typo.stderr).toContain("downtimeLimitMS")
    const ghost = await runCli("simulate", file("ghost.json"))
    expect(ghost.exitCode).toBe(2)
    expect(ghost.stderr).toContain('faults.source.gpu7: unknown device "gpu7"')
    expect((await runCli("simulate", file("missing.json"))).exitCode).toBe(2)
  })
})

const bin = fileURLToPath(new URL("../../packages/cli/bin/lockstep.js", import.meta.url))

interface Exited {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const start = (args: ReadonlyArray<string>) => {
  const child: ChildProcess = spawn(process.execPath, [bin, ...args], { stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (d) => {
    stdout += String(d)
  })
  child.stderr?.on("data", (d) => {
    stderr += String(d)
  })
  const exited = new Promise<Exited>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })))
  return { child, exited, stderr: () => stderr }
}

const waitFor = async <A>(what: string, probe: () => A | undefined, timeoutMs = 15_000): Promise<A> => {
  const until = Date.now() + timeoutMs
  for (;;) {
    const found = probe()
    if (found !== undefined) return found
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe("lockstep migrate", () => {
  it("runs the destination and the source as two processes over mutual TLS, and the states match", async () => {
    const certs = await Effect.runPromise(Effect.scoped(makeCertificates))
    const pem = async (name: string, text: string) => {
      await writeFile(file(name), text)
      return file(name)
    }
    const ca = await pem("ca.pem", certs.ca)
    const tls = async (role: "server" | "client") => [
      "--tls-cert",
      await pem(`${role}.pem`, certs[role].cert),
      "--tls-key",
      await pem(`${role}.key`, certs[role].key),
      "--tls-ca",
      ca
    ]
    const journal = file("journal.json")
    const destination = start([
      "migrate",
      "--listen",
      "0",
      "--json",
      "--journal",
      journal,
      ...(await tls("server")),
      file("ok.json")
    ])
    try {
      const port = await waitFor(
        "the destination to listen",
        () => /listening on 127\.0\.0\.1:(\d+)/.exec(destination.stderr())?.[1]
      )
      const source = start([
        "migrate",
        "--connect",
        `localhost:${port}`,
        "--json",
        "--journal",
        journal,
        ...(await tls("client")),
        file("ok.json")
      ])
      const [s, d] = await Promise.all([source.exited, destination.exited])
      expect(s.code, s.stderr).toBe(0)
      expect(d.code, d.stderr).toBe(0)
      const sent = JSON.parse(s.stdout)
      const received = JSON.parse(d.stdout)
      expect(sent).toMatchObject({ ok: true, role: "source", confirmed: true, violations: 0 })
      expect(received).toMatchObject({ ok: true, role: "destination", violations: 0, migration: sent.migration })
      expect(received.bytes).toBe(sent.bytes)
      expect(received.digests).toEqual(sent.digests)
      expect(Object.values(sent.final)).toEqual(["STOP_COPY", "STOP_COPY", "STOP_COPY"])
      expect(Object.values(received.final)).toEqual(["RUNNING", "RUNNING", "RUNNING"])
      const recorded = JSON.parse(await readFile(journal, "utf8"))
      expect(recorded.migrations).toMatchObject([{ migration: sent.migration, status: "completed" }])
    } finally {
      destination.child.kill()
    }
  })
})
