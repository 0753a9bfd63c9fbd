import { decodeGroup, stop } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import type { State } from "@lockstep/fsm"
import { Compatibility } from "@lockstep/migration"
import { type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { Effect } from "effect"
import { CliFailure, invalidInput } from "./CliFailure.js"
import type { Role, Scenario } from "./Scenario.js"

/*
 * A scenario side as a simulated group, and what the commands read from one: its devices'
 * states, the fabric's P2P violations, and the compatibility facts of simulated devices.
 */

/**
 * The simulated group of one side. The destination's memory differs from the source's (its
 * seeds carry the role), and it is parked in STOP before anything else: an incoming group
 * waits stopped, and never runs unless the migration commits. Its parking arcs count in the
 * faults' `nth`.
 */
export const simulateSide = (scenario: Scenario, role: Role): Effect.Effect<SimulatedGroup, CliFailure> =>
  Effect.gen(function* () {
    const group = yield* decodeGroup(scenario.documents[role]).pipe(
      Effect.mapError((e) => invalidInput(`${scenario.file} (${role}): ${e.message}`))
    )
    const sim = yield* simulateGroup(group, {
      seed: scenario.seed,
      writesPerSecond: scenario.writesPerSecond,
      // A device a scenario backs by vfio-user is that backend's, not the simulator's.
      simulates: (d) => d.vfioUser === undefined,
      ...(role === "destination" ? { role } : {})
    }).pipe(Effect.mapError((e) => invalidInput(`${scenario.file} (${role}): ${e.message}`)))
    if (role === "destination")
      yield* stop(sim).pipe(
        Effect.mapError(
          (e) =>
            new CliFailure({ text: `the destination group could not be parked in STOP: ${e.message}`, exitCode: 1 })
        )
      )
    return sim
  })

/** Compatibility data of simulated devices: their state size and page size. */
export const simCompatibility = (groups: ReadonlyArray<SimulatedGroup>): Compatibility.Compatibility =>
  Compatibility.jsonFacts((device: Device) => {
    for (const g of groups) {
      const sim = g.devices.get(device.id)
      if (sim === device) return { stateSize: sim.config.stateSize, pageSize: sim.config.pageSize }
    }
    return undefined
  })

/** Every device's state, as one JSON-ready record. */
export const statesOf = (sim: SimulatedGroup): Effect.Effect<Record<string, State | "UNKNOWN">> =>
  Effect.map(
    Effect.forEach([...sim.devices.values()], (d) =>
      d.getState.pipe(
        Effect.catch(() => Effect.succeed<State | "UNKNOWN">("UNKNOWN")),
        Effect.map((s) => [d.id, s] as const)
      )
    ),
    (rows) => Object.fromEntries(rows)
  )

/** P2P violations the fabric recorded (pending writes landed first). */
export const violationsOf = (sim: SimulatedGroup): Effect.Effect<number> =>
  Effect.map(sim.fabric.settle, () => sim.fabric.violations().length)
