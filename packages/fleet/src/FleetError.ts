import { Schema } from "effect"

/** One reason a fleet file was refused, at a JSON path such as `vms[3].host`. */
export const FleetProblem = Schema.Struct({
  /** The JSON path of the offending value; empty for the document itself. */
  path: Schema.String,
  /** What is wrong, as a sentence a user can act on. */
  reason: Schema.String
})

/** One reason a fleet file was refused, at a JSON path such as `vms[3].host`. */
export type FleetProblem = typeof FleetProblem.Type

/** Why a host cannot take a VM. */
export const Unfit = Schema.Struct({ host: Schema.String, reason: Schema.String })

/** Why a host cannot take a VM. */
export type Unfit = typeof Unfit.Type

/** The fleet file is not valid; `problems` lists every reason, in document order. Nothing was moved. */
export class InvalidFleet extends Schema.TaggedClass<InvalidFleet>()("InvalidFleet", {
  /** The file the fleet came from, if any. */
  source: Schema.UndefinedOr(Schema.String),
  problems: Schema.Array(FleetProblem)
}) {
  get message(): string {
    const prefix = this.source === undefined ? "" : `${this.source}: `
    return this.problems.map((p) => `${prefix}${p.path === "" ? "" : `${p.path}: `}${p.reason}`).join("\n")
  }
}

/**
 * A VM fits on no destination: every candidate is named with the reason it was ruled out
 * (free capacity, a missing label, no vfio-user sockets there). Nothing was moved.
 */
export class NoCapacity extends Schema.TaggedClass<NoCapacity>()("NoCapacity", {
  vm: Schema.String,
  devices: Schema.Number,
  candidates: Schema.Array(Unfit)
}) {
  get message(): string {
    const why = this.candidates.map((c) => `${c.host}: ${c.reason}`).join("; ")
    return `${this.vm} (${this.devices} devices) fits on no destination (${why === "" ? "no other host" : why}); add capacity or free some, or name a destination with "to"`
  }
}

/** A host does not answer on its control socket. Nothing was moved. */
export class HostUnreachable extends Schema.TaggedClass<HostUnreachable>()("HostUnreachable", {
  host: Schema.String,
  /** Where the host was asked (its control socket). */
  endpoint: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `host ${this.host} is unreachable (its control socket ${this.endpoint}: ${this.reason}); start it (lockstep fleet hosts FLEET.json --host ${this.host}) or fix its "control" in the fleet file`
  }
}

/** A VM's devices answer at no vfio-user socket on a host that needs them. Nothing was moved. */
export class DevicesUnreachable extends Schema.TaggedClass<DevicesUnreachable>()("DevicesUnreachable", {
  vm: Schema.String,
  host: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.vm}'s devices on ${this.host} do not answer: ${this.reason}; start their vfio-user servers or fix "sockets" in the fleet file`
  }
}

/**
 * A VM did not move and its source runs (its devices rolled back): why, as a sentence. The
 * workflow's typed failure; the reservation was released.
 */
export class VmNotMigrated extends Schema.TaggedClass<VmNotMigrated>()("VmNotMigrated", {
  vm: Schema.String,
  reason: Schema.String,
  /** Whether the source's devices are all RUNNING again. */
  recovered: Schema.Boolean
}) {
  get message(): string {
    return `${this.vm} was not migrated: ${this.reason}${this.recovered ? "; its source runs" : "; its source did NOT come back to RUNNING, inspect it"}`
  }
}

/** The destination refused a reservation (capacity taken meanwhile, or incompatible devices). */
export class ReservationRefused extends Schema.TaggedClass<ReservationRefused>()("ReservationRefused", {
  vm: Schema.String,
  host: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.host} refused to reserve room for ${this.vm}: ${this.reason}`
  }
}

/** Why a fleet operation failed, as a schema (it travels as a workflow's and an RPC's failure). */
export const FleetErrorReason = Schema.Union([
  InvalidFleet,
  NoCapacity,
  HostUnreachable,
  DevicesUnreachable,
  VmNotMigrated,
  ReservationRefused
])

/** Why a fleet operation failed. */
export type FleetErrorReason =
  | InvalidFleet
  | NoCapacity
  | HostUnreachable
  | DevicesUnreachable
  | VmNotMigrated
  | ReservationRefused

/**
 * Every failure of the fleet layer; `reason` says which (`Effect.catchReason("FleetError",
 * "VmNotMigrated", …)` handles one). `InvalidFleet`, `NoCapacity`, `HostUnreachable` and
 * `DevicesUnreachable` stop an evacuation before anything moves.
 */
export class FleetError extends Schema.TaggedError<FleetError>()("FleetError", {
  reason: FleetErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  static invalidFleet(fields: ConstructorParameters<typeof InvalidFleet>[0]): FleetError {
    return new FleetError({ reason: new InvalidFleet(fields) })
  }

  static noCapacity(fields: ConstructorParameters<typeof NoCapacity>[0]): FleetError {
    return new FleetError({ reason: new NoCapacity(fields) })
  }

  static hostUnreachable(fields: ConstructorParameters<typeof HostUnreachable>[0]): FleetError {
    return new FleetError({ reason: new HostUnreachable(fields) })
  }

  static devicesUnreachable(fields: ConstructorParameters<typeof DevicesUnreachable>[0]): FleetError {
    return new FleetError({ reason: new DevicesUnreachable(fields) })
  }

  static vmNotMigrated(fields: ConstructorParameters<typeof VmNotMigrated>[0]): FleetError {
    return new FleetError({ reason: new VmNotMigrated(fields) })
  }

  static reservationRefused(fields: ConstructorParameters<typeof ReservationRefused>[0]): FleetError {
    return new FleetError({ reason: new ReservationRefused(fields) })
  }
}
