import type { Device } from "@lockstep/device"
import type { State } from "@lockstep/fsm"
import { Context, Effect, Option } from "effect"
import { deviceRecord } from "./DeviceRecord.js"
import type { Group } from "./Group.js"

/**
 * A group together with the live devices that back it, by id: what the coordinator drives,
 * whatever the backend (simulated, vfio-user, the kernel's VFIO).
 */
export interface GroupRuntime {
  readonly group: Group
  readonly devices: ReadonlyMap<string, Device>
}

/**
 * The group a program drives, as a service: a program written against it runs on whichever
 * backend its layer provides (`SimulatedGroup.layer` in `@lockstep/sim`, or
 * `Layer.succeed(GroupRuntime, runtime)` over your own devices).
 */
export const GroupRuntime = Context.Service<GroupRuntime>("@lockstep/group/GroupRuntime")

/** Every device's state as the device reports it now, `UNKNOWN` where it cannot be read (all asked at once). */
export const reportedStates = (runtime: GroupRuntime): Effect.Effect<Record<string, State | "UNKNOWN">> =>
  Effect.map(
    Effect.forEach(
      runtime.group.devices,
      (d) => {
        const device = runtime.devices.get(d.id)
        const state = device === undefined ? Effect.succeed(Option.none<State>()) : Effect.option(device.getState)
        return Effect.map(state, (s) => [d.id, Option.getOrElse(s, (): State | "UNKNOWN" => "UNKNOWN")] as const)
      },
      { concurrency: "unbounded" }
    ),
    deviceRecord
  )
