import { spawn } from "node:child_process"
import { closeSync, mkdirSync, openSync } from "node:fs"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import type { Fleet, HostControl } from "@lockstep/fleet"
import { Effect, Exit } from "effect"
import { CliFailure } from "./CliFailure.js"

/**
 * The process that simulates a fleet's hosts (`lockstep fleet hosts`), as `lockstep fleet
 * evacuate` manages it: started in the background when no simulated host answers, left running
 * when the orchestrator dies (that is the point: the devices keep their state), and stopped once
 * an evacuation has settled every VM.
 */

type FleetModule = typeof import("@lockstep/fleet")

/** Every simulated host of `fleet` and how it answered an inventory request within `timeoutMs` (by index). */
export const askInventories = (
  F: FleetModule,
  fleet: Fleet,
  state: string,
  timeoutMs: number
): Effect.Effect<{
  readonly hosts: ReadonlyArray<string>
  readonly exits: ReadonlyArray<Exit.Exit<HostControl.HostInventory, HostControl.HostControlFailed>>
}> =>
  Effect.gen(function* () {
    const hosts = F.simulatedHosts(fleet)
    const exits = yield* Effect.forEach(
      hosts,
      (h) => Effect.exit(F.HostControl.inventory(F.StateDirectory.controlSocket(fleet, state, h), timeoutMs)),
      { concurrency: "unbounded" }
    )
    return { hosts, exits }
  })

/** The simulated hosts that answer on their control sockets, and those that do not. */
const answering = (F: FleetModule, fleet: Fleet, state: string) =>
  Effect.map(askInventories(F, fleet, state, 1_000), ({ hosts, exits }) => ({
    hosts,
    up: hosts.filter((_, i) => exits[i] !== undefined && Exit.isSuccess(exits[i]))
  }))

/**
 * Makes sure the fleet's simulated hosts run: if none answers, starts `lockstep fleet hosts` in
 * the background (its output in `STATE/hosts.log`) and waits until every one answers.
 */
export const ensureSimulatedHosts = (F: FleetModule, fleet: Fleet, fleetFile: string, state: string) =>
  Effect.gen(function* () {
    const { hosts, up } = yield* answering(F, fleet, state)
    if (hosts.length === 0 || up.length > 0) return { started: false }
    const dir = resolve(state)
    mkdirSync(dir, { recursive: true })
    const log = openSync(join(dir, "hosts.log"), "a")
    const bin = fileURLToPath(new URL("../bin/lockstep.js", import.meta.url))
    const child = spawn(process.execPath, [bin, "fleet", "hosts", resolve(fleetFile), "--state", dir], {
      detached: true,
      stdio: ["ignore", log, log]
    })
    child.unref()
    closeSync(log)
    for (let waited = 0; waited < 20_000; waited += 100) {
      yield* Effect.sleep(100)
      const now = yield* answering(F, fleet, state)
      if (now.up.length === hosts.length) return { started: true }
    }
    return yield* new CliFailure({
      text: `the simulated hosts did not start within 20 s; see ${F.shown(join(dir, "hosts.log"))}`,
      exitCode: 1
    })
  })

/** Asks every simulated host of the fleet to stop (the hosts process exits when all have). */
export const stopSimulatedHosts = (F: FleetModule, fleet: Fleet, state: string) =>
  Effect.forEach(
    F.simulatedHosts(fleet),
    (h) => Effect.ignore(F.HostControl.call(F.StateDirectory.controlSocket(fleet, state, h), { op: "stop" }, 2_000)),
    { concurrency: "unbounded", discard: true }
  )
