import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeSimDevice } from "@lockstep/sim"
import { serve } from "@lockstep/vfio-user"
import { Effect, Exit, Scope } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli } from "./runCli.js"

describe("group files with vfio-user devices", () => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-cli-vfio-group-"))
  const socket = join(dir, "nvme0.sock")
  const scope = Effect.runSync(Scope.make())
  const file = (name: string, devices: unknown) => {
    const path = join(dir, name)
    writeFileSync(path, JSON.stringify({ devices }))
    return path
  }

  beforeAll(async () => {
    await Effect.runPromise(
      Effect.gen(function* () {
        const device = yield* makeSimDevice("nvme0", { flags: 5, arcLatencyMs: 0 })
        yield* serve({ path: socket, device })
      }).pipe(Scope.provide(scope))
    )
  })
  afterAll(async () => {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    rmSync(dir, { recursive: true, force: true })
  })

  it("take the device's flags from its server", async () => {
    const path = join(dir, "group.json")
    writeFileSync(
      path,
      JSON.stringify({
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"] },
          { id: "nvme0", kind: "pci", vfioUser: { socket } }
        ],
        // nvme0 has no P2P: it may only be a target.
        topology: { edges: [["gpu0", "nvme0"]] }
      })
    )
    const group = path
    const r = await runCli("plan", group, "--to", "STOP_COPY", "--json")
    expect(r.exitCode).toBe(0)
    const arcs = JSON.parse(r.stdout).arcs as Array<{ device: string; from: string; to: string }>
    // Without P2P (the server reports STOP_COPY and PRE_COPY), nvme0 goes RUNNING → STOP directly.
    expect(arcs.filter((a) => a.device === "nvme0").map((a) => `${a.from}>${a.to}`)).toEqual([
      "RUNNING>STOP",
      "STOP>STOP_COPY"
    ])
  })

  it("refuse declared flags that disagree with the server, with exit code 2", async () => {
    const group = file("wrong.json", [{ id: "nvme0", kind: "pci", flags: ["STOP_COPY", "P2P"], vfioUser: { socket } }])
    const r = await runCli("check", group)
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain("devices[0].flags")
    expect(r.stderr).toContain("reports STOP_COPY,PRE_COPY")
  })
})
