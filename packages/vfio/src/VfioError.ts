import type { State } from "@lockstep/fsm"
import { Data } from "effect"

/** A process that holds a device open. */
export interface Holder {
  readonly pid: number
  /** Its command name (`/proc/PID/comm`), if it could be read. */
  readonly command: string | undefined
}

/**
 * Why a kernel device could not be opened:
 * - `Unavailable`: this machine cannot open VFIO devices at all (not Linux, no FFI, no device
 *   cdev or iommufd in the kernel);
 * - `NotFound`: the path names no VFIO device;
 * - `Held`: another process has the device bound (the kernel allows one opener at a time);
 * - `Refused`: a step of opening failed with an errno.
 */
export type OpenProblem =
  | { readonly _tag: "Unavailable"; readonly reason: string }
  | { readonly _tag: "NotFound"; readonly reason: string }
  | { readonly _tag: "Held"; readonly holders: ReadonlyArray<Holder> }
  | { readonly _tag: "Refused"; readonly step: string; readonly code: string; readonly errno: number }

const describe = (problem: OpenProblem): string => {
  switch (problem._tag) {
    case "Unavailable":
    case "NotFound":
      return problem.reason
    case "Held": {
      const who = problem.holders.map((h) =>
        h.pid === process.pid ? "this process" : `process ${h.pid}${h.command === undefined ? "" : ` (${h.command})`}`
      )
      return who.length === 0
        ? "it is held by another opener (the kernel refused to bind it a second time); close the other user of the device"
        : `it is held by ${who.join(", ")}; stop that process or let it close the device first`
    }
    case "Refused":
      return `the kernel refused ${problem.step} (${problem.code}, errno ${problem.errno})`
  }
}

/** A kernel VFIO device could not be opened: names the device, its path and why. */
export class VfioOpenFailed extends Data.TaggedError("VfioOpenFailed")<{
  /** The device's id in its group (or its path). */
  readonly device: string
  /** The sysfs or cdev path it was named by. */
  readonly path: string
  readonly problem: OpenProblem
}> {
  override get message(): string {
    const name = this.device === this.path ? this.path : `${this.device} (${this.path})`
    return `cannot open kernel device ${name}: ${describe(this.problem)}`
  }
}

/**
 * A device was found in a state it may not start a migration from, before anything moved: the
 * migration state outlives the process that set it, so a crashed coordinator leaves it there.
 */
export class DeviceNotReady extends Data.TaggedError("DeviceNotReady")<{
  readonly device: string
  readonly path: string
  readonly state: State
  /** The states it may start from. */
  readonly expected: ReadonlyArray<State>
}> {
  override get message(): string {
    return `kernel device ${this.device} (${this.path}) is in ${this.state}, not ${this.expected.join(" or ")}: the migration state outlives the process that set it, so a migration that finished or one that stopped half-way leaves it so. Nothing was moved. If no one else drives the device, reset it (lockstep vfio reset --sysfsdev PATH, or --cdev PATH) and run again`
  }
}

/** A region read, write or query failed. */
export class RegionAccessFailed extends Data.TaggedError("RegionAccessFailed")<{
  readonly device: string
  readonly region: number
  readonly operation: "info" | "read" | "write"
  readonly code: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.device}: region ${this.region} ${this.operation} failed (${this.code}): ${this.reason}`
  }
}
