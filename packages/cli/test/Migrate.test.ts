import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli, startCli } from "./runCli.js"

const scenario = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 131072 } },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 131072 } }
  ],
  topology: "shared-iommu",
  migration: { downtimeLimitMs: 100 }
}

let dir = ""
const file = (name: string) => join(dir, name)
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-migrate-"))
  await writeFile(file("scenario.json"), JSON.stringify(scenario))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const waitFor = async <A>(what: string, probe: () => A | undefined): Promise<A> => {
  for (const until = Date.now() + 30_000; Date.now() < until; await new Promise((r) => setTimeout(r, 10))) {
    const found = probe()
    if (found !== undefined) return found
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A destination listening on a free port for the scenario, and that port once it says so. */
const listeningDestination = async (...flags: ReadonlyArray<string>) => {
  const destination = startCli("migrate", "--listen", "0", file("scenario.json"), ...flags)
  const port = await waitFor(
    "the destination to listen",
    () => /listening on [^:]+:(\d+)/.exec(destination.stderr())?.[1]
  )
  return { destination, port }
}

describe("lockstep migrate on a terminal", () => {
  it("shows each side's progress on stderr, as simulate does, and keeps stdout for the result", async () => {
    const was = process.stderr.isTTY
    process.stderr.isTTY = true
    try {
      const { destination, port } = await listeningDestination()
      const source = await runCli(
        "migrate",
        "--connect",
        `127.0.0.1:${port}`,
        "--journal",
        file("journal.json"),
        file("scenario.json")
      )
      const received = await destination.stop()
      expect(source.exitCode, source.stderr).toBe(0)
      expect(received.exitCode, received.stderr).toBe(0)
      const progress = (stderr: string) => stderr.split("\n").filter((l) => /^lockstep: +\d+(\.\d)? ms {2}/.test(l))
      const sent = progress(source.stderr).join("\n")
      expect(sent).toContain("handshake done: the destination accepted the group")
      expect(sent).toMatch(/pre-copy round 1: .* downtime estimate/)
      expect(sent).toContain("switchover (")
      expect(sent).toContain("every device drained")
      const taken = progress(received.stderr).join("\n")
      expect(taken).toMatch(/handshake done: the source's group is accepted \(migration \w+\)/)
      expect(taken).toContain("the destination validated the data")
      expect(taken).toContain("the destination group is RUNNING")
      expect(source.stdout).toMatch(/^migrated \w+: 2 devices in \d+ pre-copy rounds?, /)
    } finally {
      process.stderr.isTTY = was
    }
  })
})

describe("lockstep migrate --channels", () => {
  it("spreads the devices over several TCP connections, and both sides end as one channel would leave them", async () => {
    const { destination, port } = await listeningDestination("--json")
    const source = await runCli(
      "migrate",
      "--connect",
      `127.0.0.1:${port}`,
      "--channels",
      "2",
      "--journal",
      file("journal-channels.json"),
      file("scenario.json"),
      "--json"
    )
    const received = await destination.stop()
    expect(source.exitCode, source.stderr).toBe(0)
    expect(received.exitCode, received.stderr).toBe(0)
    const sent = JSON.parse(source.stdout)
    const taken = JSON.parse(received.stdout)
    expect(sent.ok).toBe(true)
    expect(taken.ok).toBe(true)
    // The P2P invariant, as each side's fabric saw it.
    expect(sent.violations).toBe(0)
    expect(taken.violations).toBe(0)
    expect(taken.digests).toEqual(sent.digests)
    expect(Object.values(sent.final)).toEqual(["STOP_COPY", "STOP_COPY"])
  })

  it("--local --channels 2: both sides in this process over in-memory connections", async () => {
    const run = await runCli("migrate", "--local", "--channels", "2", file("scenario.json"), "--json")
    expect(run.exitCode, run.stderr).toBe(0)
    const report = JSON.parse(run.stdout)
    expect(report.ok).toBe(true)
    // The P2P invariant, as both sides' fabrics saw it; the group runs on the destination.
    expect(report.violations).toBe(0)
    expect(Object.values(report.final.destination)).toEqual(["RUNNING", "RUNNING"])
  })
})
