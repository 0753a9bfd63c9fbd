import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { HostControl } from "@lockstep/fleet"
import { Effect, Exit, Scope } from "effect"

/*
 * What the fleet's process-level tests share: a fleet in a temporary directory, the `lockstep`
 * binary run as separate processes (the simulated hosts, orchestrators and runners), the hosts'
 * control sockets, a seeded random source, and the judge of every VM's end state.
 */

const root = fileURLToPath(new URL("../..", import.meta.url))
/** The built CLI (`npm test` builds it first with `tsc -b`). */
export const bin = join(root, "packages/cli/bin/lockstep.js")
/** The pinned Node 24 when installed. */
export const node = existsSync(join(root, "node_modules/.bin/node"))
  ? join(root, "node_modules/.bin/node")
  : process.execPath

/** A fleet written to a fresh directory (short: UNIX socket paths are at most 107 bytes). */
export interface FleetDir {
  readonly dir: string
  readonly file: string
  readonly state: string
}

export const fleetDir = (doc: unknown): FleetDir => {
  const dir = mkdtempSync(join(tmpdir(), "lf-"))
  const file = join(dir, "fleet.json")
  writeFileSync(file, JSON.stringify(doc, null, 2))
  return { dir, file, state: join(dir, "st") }
}

/** A `lockstep` process and how it ended. */
export interface Run {
  readonly child: ChildProcess
  readonly done: Promise<{
    readonly code: number | null
    readonly signal: string | null
    readonly stdout: string
    readonly stderr: string
  }>
}

/** Runs `lockstep ARGS` as a process of its own, with `env` on top of this one's. */
export const lockstep = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}): Run => {
  const child = spawn(node, [bin, ...args], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString()
  })
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString()
  })
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  )
  return { child, done }
}

/** Runs an effect to a promise. */
export const run = <A, E>(effect: Effect.Effect<A, E>): Promise<A> => Effect.runPromise(effect)

/** The control socket of a simulated host of `f`. */
export const control = (f: FleetDir, host: string): string => join(f.state, "s", host, "control")

/** Waits until every host answers on its control socket. */
export const waitForHosts = async (f: FleetDir, hosts: ReadonlyArray<string>, timeoutMs = 20_000): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const exits = await Promise.all(
      hosts.map((h) => Effect.runPromiseExit(HostControl.inventory(control(f, h), 1_000)))
    )
    if (exits.every(Exit.isSuccess)) return
    if (Date.now() > deadline)
      throw new Error(`simulated hosts ${hosts.join(", ")} did not answer within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Starts the simulated hosts of `f` in a process of their own and waits until they answer. */
export const startHosts = async (f: FleetDir, hosts: ReadonlyArray<string>): Promise<Run> => {
  const hostsRun = lockstep(["fleet", "hosts", f.file, "--state", f.state])
  await waitForHosts(f, hosts)
  return hostsRun
}

/** Every simulated host's inventory. */
export const inventories = (
  f: FleetDir,
  hosts: ReadonlyArray<string>
): Promise<ReadonlyArray<HostControl.HostInventory>> =>
  Promise.all(hosts.map((h) => run(HostControl.inventory(control(f, h), 5_000))))

/** Streams a host's device events to `onEvent` until the returned function is called. */
export const watch = async (
  f: FleetDir,
  host: string,
  onEvent: (e: HostControl.WatchEvent) => void
): Promise<() => Promise<void>> => {
  const scope = await run(Scope.make())
  await run(HostControl.watch(control(f, host), onEvent).pipe(Scope.provide(scope)))
  return () => run(Scope.close(scope, Exit.void))
}

/** Stops a process (`SIGKILL`) and waits for it. */
export const kill = async (r: Run): Promise<void> => {
  if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGKILL")
  await r.done
}

/** Removes a fleet's directory. */
export const remove = (f: FleetDir): void => rmSync(f.dir, { recursive: true, force: true })

/** A small seeded PRNG (mulberry32): the same seed replays the same choices. */
export const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Where a VM is, judged from its devices on every host alone (halted = STOP, STOP_COPY, RESUMING). */
export type Placement = "migrated" | "rolled-back" | "both" | "neither"

const halted = new Set(["STOP", "STOP_COPY", "RESUMING"])

/**
 * Judges a VM from the hosts' inventories, by the rule of the issue: migrated = every device
 * at the destination RUNNING and every device at the source halted; rolled back = every device
 * at the source RUNNING and none at the destination running.
 */
export const placementOf = (
  invs: ReadonlyArray<HostControl.HostInventory>,
  vm: string,
  source: string,
  destination: string
): Placement => {
  const devices = (host: string) => invs.find((i) => i.host === host)?.vms.find((v) => v.vm === vm)?.devices ?? []
  const src = devices(source)
  const dst = devices(destination)
  const settled = (d: { readonly inFlight?: string | undefined }) => d.inFlight === undefined
  const srcRunning = src.length > 0 && src.every((d) => d.state === "RUNNING" && settled(d))
  const srcHalted = src.length > 0 && src.every((d) => halted.has(d.state) && settled(d))
  const dstRunning = dst.length > 0 && dst.every((d) => d.state === "RUNNING" && settled(d))
  const dstIdle = dst.every((d) => d.state !== "RUNNING" && settled(d))
  if (dstRunning && srcHalted) return "migrated"
  if (srcRunning && dstIdle) return "rolled-back"
  return srcRunning && dst.some((d) => d.state === "RUNNING") ? "both" : "neither"
}

/** P2P violations (and corrupting writes) over every VM group on every host. */
export const violations = (invs: ReadonlyArray<HostControl.HostInventory>): ReadonlyArray<string> =>
  invs.flatMap((i) =>
    i.vms
      .filter((v) => v.violations + v.corruptingWrites > 0)
      .map(
        (v) =>
          `${i.host}/${v.vm}: ${v.violations} violations, ${v.corruptingWrites} corrupting writes: ${v.firstViolation ?? ""}`
      )
  )
