import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, GroupRuntime } from "@lockstep/group"
import { runOnVirtualTime, SimulatedGroup } from "@lockstep/sim"
import { Effect } from "effect"

const all = ["STOP_COPY", "P2P", "PRE_COPY"]

/** A program written against the `GroupRuntime` service alone, as a user's would be. */
const stopAll = Effect.gen(function* () {
  const runtime = yield* GroupRuntime
  // Down the group's only edge in the safe order: the initiator quiesces before its target halts.
  for (const [id, arc] of [
    ["gpu0", "RUNNING_P2P"],
    ["gpu1", "RUNNING_P2P"],
    ["gpu1", "STOP"],
    ["gpu0", "STOP"]
  ] as const) {
    const device = runtime.devices.get(id)
    if (device === undefined) return yield* Effect.die(new Error(`${id} is not in the runtime`))
    yield* device.setState(arc)
  }
  return yield* Effect.forEach([...runtime.devices.values()], (device) => device.getState)
})

describe("SimulatedGroup.layer", () => {
  it.effect("provides the simulated group as the GroupRuntime a program drives, and as itself for its fabric", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup({
        devices: [
          { id: "gpu0", kind: "pci", flags: all },
          { id: "gpu1", kind: "pci", flags: all }
        ],
        topology: { edges: [["gpu0", "gpu1"]] }
      })
      const program = Effect.gen(function* () {
        const states = yield* runOnVirtualTime(stopAll)
        const sim = yield* SimulatedGroup
        yield* sim.fabric.settle
        return { states, devices: [...sim.devices.keys()], violations: sim.fabric.violations() }
      })
      const result = yield* program.pipe(Effect.provide(SimulatedGroup.layer(group, { writesPerSecond: 1000 })))
      expect(result.states).toEqual(["STOP", "STOP"])
      expect(result.devices).toEqual(["gpu0", "gpu1"])
      // gpu0 stopped writing before gpu1 halted: the fabric saw no write into a halted device.
      expect(result.violations).toEqual([])
    })
  )
})
