import { spawn } from "node:child_process"
import { existsSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { connect } from "@lockstep/vfio-user"
import { Effect } from "effect"
import { fixture } from "./fixtures.js"
import { type CliRun, type RunningCli, runCli, startCli } from "./runCli.js"

const waitFor = async (what: string, ready: () => boolean, timeoutMs = 3000): Promise<void> => {
  const until = Date.now() + timeoutMs
  while (!ready()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Starts `vfio-user serve` in this process and waits until it says it listens. */
const startServer = async (...args: ReadonlyArray<string>): Promise<RunningCli> => {
  const server = startCli("vfio-user", "serve", ...args)
  await waitFor("the server", () => server.stdout().includes("listening"))
  return server
}

const info = async (socket: string) => {
  const r = await runCli("vfio-user", "info", "--socket", socket, "--json")
  expect(r.exitCode).toBe(0)
  expect(r.stdout.trim().split("\n")).toHaveLength(1)
  return JSON.parse(r.stdout)
}

describe("lockstep vfio-user", () => {
  let dir = ""
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-vfio-user-"))
  })
  afterAll(() => rm(dir, { recursive: true, force: true }))

  it("serves the default simulated device until stopped, and info reports it", async () => {
    const socket = join(dir, "default.sock")
    const server = await startServer("--socket", socket)
    let ended: CliRun | undefined
    try {
      expect(server.stdout()).toBe(
        `vfio-user server listening on ${socket}: simulated pci device sim0, flags STOP_COPY, P2P, PRE_COPY, 1 MiB of state (Ctrl-C to stop)\n`
      )

      const report = await info(socket)
      expect(report).toMatchObject({
        socket,
        version: { major: 0, minor: 2 },
        device: { flags: ["RESET", "PCI"], numRegions: 9, numIrqs: 5 },
        migration: { flags: ["STOP_COPY", "P2P", "PRE_COPY"], state: "RUNNING" }
      })
      expect(report.regions).toHaveLength(9)
      expect(report.regions[7]).toEqual({ index: 7, name: "CONFIG", flags: ["READ", "WRITE"], size: 256, offset: 0 })

      // A client moves the device; info reads the state back rather than assuming it.
      await Effect.runPromise(
        Effect.scoped(connect({ path: socket }).pipe(Effect.flatMap((d) => d.setState("RUNNING_P2P"))))
      )
      expect((await info(socket)).migration.state).toBe("RUNNING_P2P")

      const readable = await runCli("vfio-user", "info", "--socket", socket)
      expect(readable.stdout).toContain("migration     flags STOP_COPY, P2P, PRE_COPY\nstate         RUNNING_P2P")
      expect(readable.stdout).toContain("region 7      CONFIG size 256, flags READ, WRITE")
    } finally {
      ended = await server.stop()
    }
    expect(ended.exitCode).toBe(130)
    expect(existsSync(socket)).toBe(false)
  })

  it("serves the device a --sim file configures", async () => {
    const socket = join(dir, "ccw.sock")
    const server = await startServer("--socket", socket, "--sim", fixture("ccw-device.json"))
    try {
      expect(server.stdout()).toContain("simulated ccw device sim0, flags STOP_COPY, PRE_COPY, 64 KiB of state")
      const report = await info(socket)
      expect(report.device.flags).toEqual(["RESET", "CCW"])
      expect(report.migration).toEqual({ flags: ["STOP_COPY", "PRE_COPY"], state: "RUNNING" })
    } finally {
      await server.stop()
    }
    expect(existsSync(socket)).toBe(false)
  })

  it("serves the PCI ids a device file gives, and pads MIG_DATA_READ replies on request", async () => {
    const socket = join(dir, "ids.sock")
    const server = await startServer("--socket", socket, "--sim", fixture("nvidia-device.json"), "--pad-mig-data-read")
    try {
      expect(server.stdout()).toContain(
        "simulated pci device sim0, flags STOP_COPY, PRE_COPY, 64 KiB of state, PCI ids 10de:2230, MIG_DATA_READ replies padded to the size asked"
      )
      expect((await info(socket)).pci).toEqual({ vendorId: 0x10de, deviceId: 0x2230 })
      const readable = await runCli("vfio-user", "info", "--socket", socket)
      expect(readable.stdout).toContain("pci ids       10de:2230")
    } finally {
      await server.stop()
    }
  })

  it("refuses a device file with bad PCI ids, with exit code 2", async () => {
    const socket = join(dir, "bad-pci.sock")
    const r = await runCli("vfio-user", "serve", "--socket", socket, "--sim", fixture("bad-pci-device.json"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('"pci" must be {"vendorId": 0-65535, "deviceId": 0-65535}')
    expect(existsSync(socket)).toBe(false)
  })

  it("refuses a --sim file with a misspelt key or a bad flag, with exit code 2", async () => {
    const socket = join(dir, "misspelt.sock")
    const r = await runCli("vfio-user", "serve", "--socket", socket, "--sim", fixture("misspelt-device.json"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain("not a valid simulated device configuration")
    expect(r.stderr).toContain("  statesize: unexpected key\n")
    expect(r.stderr).toContain('  flags[1]: unknown flag "NDMA"')
    expect(existsSync(socket)).toBe(false)
  })

  it("says that the socket's directory does not exist (not a permission problem), with exit code 2", async () => {
    const socket = join(dir, "no-such-dir", "gpu0.sock")
    const r = await runCli("vfio-user", "serve", "--socket", socket)
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toBe(
      `lockstep: --socket: the directory ${join(dir, "no-such-dir")} does not exist; create it, or give a socket path in an existing directory\n`
    )
  })

  it("refuses to take over a path that exists, with exit code 1", async () => {
    const socket = join(dir, "taken.sock")
    await writeFile(socket, "")
    const r = await runCli("vfio-user", "serve", "--socket", socket)
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain(`cannot listen on ${socket}: the path already exists`)
    expect(existsSync(socket)).toBe(true)
  })

  it("info on a missing socket says so, with exit code 1", async () => {
    const socket = join(dir, "missing.sock")
    const r = await runCli("vfio-user", "info", "--socket", socket)
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toBe(
      `lockstep: no vfio-user server at ${socket}: the socket does not exist; start one with "lockstep vfio-user serve --socket ${socket}"\n`
    )
  })

  it("info on a path nobody listens on says the connection was refused, with exit code 1", async () => {
    const socket = join(dir, "stale.sock")
    await writeFile(socket, "")
    const r = await runCli("vfio-user", "info", "--socket", socket, "--json")
    expect(r.exitCode).toBe(1)
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      exitCode: 1,
      error: { _tag: "OperationFailed", message: expect.stringContaining("the connection was refused") }
    })
    expect(r.stderr).toContain("the connection was refused")
  })

  it("removes its socket when the binary gets SIGTERM", async () => {
    const socket = join(dir, "process.sock")
    const bin = fileURLToPath(new URL("../bin/lockstep.js", import.meta.url))
    const child = spawn(process.execPath, [bin, "vfio-user", "serve", "--socket", socket], { stdio: "pipe" })
    let stdout = ""
    child.stdout.on("data", (chunk) => {
      stdout += String(chunk)
    })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    try {
      // A fresh node process takes seconds to start on a loaded machine.
      await waitFor("the server process", () => stdout.includes("listening"), 30_000)
      expect(existsSync(socket)).toBe(true)
    } finally {
      child.kill("SIGTERM")
    }
    // 128 + 15, as a shell reports a process SIGTERM stopped.
    expect(await exited).toBe(143)
    expect(existsSync(socket)).toBe(false)
  })
})
