import type { Device } from "@lockstep/device"
import type { Group } from "./Group.js"

/**
 * A group together with the live devices that back it, by id: what the coordinator drives,
 * whatever the backend (simulated, vfio-user, the kernel's VFIO).
 */
export interface GroupRuntime {
  readonly group: Group
  readonly devices: ReadonlyMap<string, Device>
}
