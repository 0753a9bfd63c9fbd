import type { Device } from "@lockstep/device"
import { Context } from "effect"
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
