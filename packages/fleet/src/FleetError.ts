import { Data, Schema } from "effect"

/** One reason a fleet file was refused, at a JSON path such as `vms[3].host`. */
export interface FleetProblem {
  /** The JSON path of the offending value; empty for the document itself. */
  readonly path: string
  /** What is wrong, as a sentence a user can act on. */
  readonly reason: string
}

/** The fleet file is not valid; `problems` lists every reason, in document order. Nothing was moved. */
export class InvalidFleet extends Data.TaggedError("InvalidFleet")<{
  /** The file the fleet came from, if any. */
  readonly source: string | undefined
  readonly problems: ReadonlyArray<FleetProblem>
}> {
  override get message(): string {
    const prefix = this.source === undefined ? "" : `${this.source}: `
    return this.problems.map((p) => `${prefix}${p.path === "" ? "" : `${p.path}: `}${p.reason}`).join("\n")
  }
}

/** Why a host cannot take a VM. */
export interface Unfit {
  readonly host: string
  readonly reason: string
}

/**
 * A VM fits on no destination: every candidate is named with the reason it was ruled out
 * (free capacity, a missing label, no vfio-user sockets there). Nothing was moved.
 */
export class NoCapacity extends Data.TaggedError("NoCapacity")<{
  readonly vm: string
  readonly devices: number
  readonly candidates: ReadonlyArray<Unfit>
}> {
  override get message(): string {
    const why = this.candidates.map((c) => `${c.host}: ${c.reason}`).join("; ")
    return `${this.vm} (${this.devices} devices) fits on no destination (${why === "" ? "no other host" : why}); add capacity or free some, or name a destination with "to"`
  }
}

/** A host does not answer on its control socket. Nothing was moved. */
export class HostUnreachable extends Data.TaggedError("HostUnreachable")<{
  readonly host: string
  /** Where the host was asked (its control socket). */
  readonly endpoint: string
  readonly reason: string
}> {
  override get message(): string {
    return `host ${this.host} is unreachable (its control socket ${this.endpoint}: ${this.reason}); start it (lockstep fleet hosts FLEET.json --host ${this.host}) or fix its "control" in the fleet file`
  }
}

/** A VM's devices answer at no vfio-user socket on a host that needs them. Nothing was moved. */
export class DevicesUnreachable extends Data.TaggedError("DevicesUnreachable")<{
  readonly vm: string
  readonly host: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.vm}'s devices on ${this.host} do not answer: ${this.reason}; start their vfio-user servers or fix "sockets" in the fleet file`
  }
}

/** Every error that stops an evacuation before anything moves. */
export type PreflightError = InvalidFleet | NoCapacity | HostUnreachable | DevicesUnreachable

/**
 * A VM did not move and its source runs (its devices rolled back): why, as a sentence. The
 * workflow's typed failure; the reservation was released.
 */
export class VmNotMigrated extends Schema.TaggedError<VmNotMigrated>()("VmNotMigrated", {
  vm: Schema.String,
  reason: Schema.String,
  /** Whether the source's devices are all RUNNING again. */
  recovered: Schema.Boolean
}) {
  override get message(): string {
    return `${this.vm} was not migrated: ${this.reason}${this.recovered ? "; its source runs" : "; its source did NOT come back to RUNNING, inspect it"}`
  }
}

/** The destination refused a reservation (capacity taken meanwhile, or incompatible devices). */
export class ReservationRefused extends Schema.TaggedError<ReservationRefused>()("ReservationRefused", {
  vm: Schema.String,
  host: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.host} refused to reserve room for ${this.vm}: ${this.reason}`
  }
}
