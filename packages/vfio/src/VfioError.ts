import { StateSchema } from "@lockstep/fsm"
import { Schema } from "effect"

/** A process that holds a device open. */
export const Holder = Schema.Struct({
  pid: Schema.Number,
  /** Its command name (`/proc/PID/comm`), if it could be read. */
  command: Schema.UndefinedOr(Schema.String)
})

/** A process that holds a device open. */
export type Holder = typeof Holder.Type

/**
 * Why a kernel device could not be opened:
 * - `Unavailable`: this machine cannot open VFIO devices at all (not Linux, no FFI, no device
 *   cdev or iommufd in the kernel);
 * - `NotFound`: the path names no VFIO device;
 * - `Held`: another process has the device bound (the kernel allows one opener at a time);
 * - `Refused`: a step of opening failed with an errno.
 */
export const OpenProblem = Schema.Union([
  Schema.Struct({ _tag: Schema.Literal("Unavailable"), reason: Schema.String }),
  Schema.Struct({ _tag: Schema.Literal("NotFound"), reason: Schema.String }),
  Schema.Struct({ _tag: Schema.Literal("Held"), holders: Schema.Array(Holder) }),
  Schema.Struct({ _tag: Schema.Literal("Refused"), step: Schema.String, code: Schema.String, errno: Schema.Number })
])

/** Why a kernel device could not be opened (see the schema). */
export type OpenProblem = typeof OpenProblem.Type

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
export class VfioOpenFailed extends Schema.TaggedClass<VfioOpenFailed>()("VfioOpenFailed", {
  /** The device's id in its group (or its path). */
  device: Schema.String,
  /** The sysfs or cdev path it was named by. */
  path: Schema.String,
  problem: OpenProblem
}) {
  get message(): string {
    const name = this.device === this.path ? this.path : `${this.device} (${this.path})`
    return `cannot open kernel device ${name}: ${describe(this.problem)}`
  }
}

/**
 * A device was found in a state it may not start a migration from, before anything moved: the
 * migration state outlives the process that set it, so a crashed coordinator leaves it there.
 */
export class DeviceNotReady extends Schema.TaggedClass<DeviceNotReady>()("DeviceNotReady", {
  device: Schema.String,
  path: Schema.String,
  state: StateSchema,
  /** The states it may start from. */
  expected: Schema.Array(StateSchema)
}) {
  get message(): string {
    return `kernel device ${this.device} (${this.path}) is in ${this.state}, not ${this.expected.join(" or ")}: the migration state outlives the process that set it, so a migration that finished or one that stopped half-way leaves it so. Nothing was moved. If no one else drives the device, reset it (lockstep vfio reset --sysfsdev PATH, or --cdev PATH) and run again`
  }
}

/** A region read, write or query failed. */
export class RegionAccessFailed extends Schema.TaggedClass<RegionAccessFailed>()("RegionAccessFailed", {
  device: Schema.String,
  region: Schema.Number,
  operation: Schema.Literals(["info", "read", "write"]),
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.device}: region ${this.region} ${this.operation} failed (${this.code}): ${this.reason}`
  }
}

/** Why a kernel VFIO operation failed, as a schema. */
export const VfioErrorReason = Schema.Union([VfioOpenFailed, DeviceNotReady, RegionAccessFailed])

/** Why a kernel VFIO operation failed. */
export type VfioErrorReason = VfioOpenFailed | DeviceNotReady | RegionAccessFailed

/**
 * Every failure of the kernel VFIO backend outside the `Device` port; `reason` says which
 * (`Effect.catchReason("VfioError", "DeviceNotReady", …)` handles one). Each reason names its device.
 */
export class VfioError extends Schema.TaggedError<VfioError>()("VfioError", {
  reason: VfioErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  /** The device that failed. */
  get device(): string {
    return this.reason.device
  }

  static openFailed(fields: ConstructorParameters<typeof VfioOpenFailed>[0]): VfioError {
    return new VfioError({ reason: new VfioOpenFailed(fields) })
  }

  static notReady(fields: ConstructorParameters<typeof DeviceNotReady>[0]): VfioError {
    return new VfioError({ reason: new DeviceNotReady(fields) })
  }

  static regionAccessFailed(fields: ConstructorParameters<typeof RegionAccessFailed>[0]): VfioError {
    return new VfioError({ reason: new RegionAccessFailed(fields) })
  }
}
