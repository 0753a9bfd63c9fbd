import { FinalStates, TransitionFailed, TransitionRefused } from "@lockstep/coordinator"
import { DeviceError } from "@lockstep/device"
import { StateSchema } from "@lockstep/fsm"
import { FormatError, TransportError } from "@lockstep/stream"
import { Schema } from "effect"
import { describeRefusal, RefusalSchema } from "./Handshake.js"
import { Phases } from "./Phase.js"

/*
 * A migration's errors are Schema classes: a side that gives up sends its typed cause to the
 * peer in the `Aborted` message, and the peer decodes it back into the same class.
 */

const SideSchema = Schema.Literals(["source", "destination"])
const PhaseSchema = Schema.Literals(Phases)

const BlockerSchema = Schema.Struct({
  device: Schema.String,
  edges: Schema.Array(Schema.Tuple([Schema.String, Schema.String])),
  edgeCount: Schema.Number,
  reason: Schema.String
})

/** A group that is not migratable (`Migratability.check`): refused before any device is touched. */
export class NotMigratable extends Schema.TaggedError<NotMigratable>()("NotMigratable", {
  side: SideSchema,
  blockers: Schema.Array(BlockerSchema)
}) {
  override get message(): string {
    return `the ${this.side} group is not migratable: ${this.blockers.map((b) => b.reason).join("; ")}`
  }
}

/** The destination refused the manifest; `refusals` lists every reason. Nothing was touched on either side. */
export class HandshakeRefused extends Schema.TaggedError<HandshakeRefused>()("HandshakeRefused", {
  refusals: Schema.Array(RefusalSchema)
}) {
  override get message(): string {
    return `the destination refused the migration: ${this.refusals.map(describeRefusal).join("; ")}`
  }
}

/** The peer said nothing for longer than the peer timeout while this side waited for it. */
export class PeerSilent extends Schema.TaggedError<PeerSilent>()("PeerSilent", {
  waitingFor: Schema.String,
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `the peer was silent for ${this.timeoutMs} ms while this side waited for ${this.waitingFor}`
  }
}

/** A step a side announces (the `Busy` message) because it may outlast the peer timeout. */
export type BusyStep = "prepare" | "validate"

const busyWith: Readonly<Record<BusyStep, string>> = {
  prepare: "preparing its devices (→ RESUMING)",
  validate: "validating its devices (RESUMING → STOP) before its vote"
}

/**
 * The peer said it was busy with a step and had not finished it when the peer timeout passed:
 * it is working, not silent, and the channel is fine. The timeout is too short for that step.
 */
export class PeerBusy extends Schema.TaggedError<PeerBusy>()("PeerBusy", {
  peer: SideSchema,
  step: Schema.Literals(["prepare", "validate"]),
  timeoutMs: Schema.Number
}) {
  override get message(): string {
    return `the ${this.peer} was still busy ${busyWith[this.step]} when the ${this.timeoutMs} ms peer timeout passed (it is working, not silent): the peer timeout must exceed the time that step takes`
  }
}

/** The peer sent something the session protocol does not allow here (a well-formed frame in the wrong place). */
export class ProtocolViolation extends Schema.TaggedError<ProtocolViolation>()("ProtocolViolation", {
  expected: Schema.String,
  got: Schema.String
}) {
  override get message(): string {
    return `protocol violation: expected ${this.expected}, got ${this.got}`
  }
}

/** A device broke the `Device` port's rules (e.g. `NoData` from a STOP_COPY read). */
export class DeviceMisbehaved extends Schema.TaggedError<DeviceMisbehaved>()("DeviceMisbehaved", {
  device: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.device}: ${this.reason}`
  }
}

/**
 * Pre-copy hit a limit with the downtime estimate still over the limit (or the destination's
 * switchover-acks missing) and the policy is `abort`.
 */
export class PrecopyLimitReached extends Schema.TaggedError<PrecopyLimitReached>()("PrecopyLimitReached", {
  /** `rounds` or `time`: the configured limit; `stalled`: the remaining bytes stopped shrinking (or nothing is left) and the estimate is still over. */
  limit: Schema.Literals(["rounds", "time", "stalled"]),
  rounds: Schema.Number,
  estimateMs: Schema.Number,
  downtimeLimitMs: Schema.Number,
  unacknowledged: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const acks = this.unacknowledged.length === 0 ? "" : `; no switchover-ack yet for ${this.unacknowledged.join(", ")}`
    const what =
      this.limit === "stalled"
        ? "pre-copy stalled (the remaining bytes stopped shrinking, or nothing is left to pre-copy)"
        : `the ${this.limit} limit was reached (${this.rounds} rounds)`
    const estimate = Number.isFinite(this.estimateMs)
      ? `at ${fmt(this.estimateMs)} ms`
      : "unbounded (a device cannot report its stop-copy length and has no stopCopyLengthEstimate)"
    return `${what} with the downtime estimate ${estimate} over the limit of ${this.downtimeLimitMs} ms${acks}, and the policy is to abort`
  }
}

/** The journal could not be read or written. */
export class JournalFailed extends Schema.TaggedError<JournalFailed>()("JournalFailed", {
  operation: Schema.Literals(["read", "begin", "decide", "complete", "renounce", "resolve"]),
  location: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `journal ${this.location}: ${this.operation} failed: ${this.reason}`
  }
}

/**
 * The journal's newest migration is not settled, so a new one may not start from it: `started`
 * and never decided (its source stopped, or is still running it: `inProgress`), `committed` (the
 * destination owns the group and never confirmed it runs) or `completed` (the group left with
 * it). A committed migration is never run again; an operator settles it first
 * (`Journal.resolve`, `lockstep journal resolve`).
 */
export class JournalUnsettled extends Schema.TaggedError<JournalUnsettled>()("JournalUnsettled", {
  location: Schema.String,
  migration: Schema.String,
  status: Schema.Literals(["started", "committed", "completed"]),
  inProgress: Schema.Boolean,
  /** The process that began it, and its host, if the journal knows. */
  pid: Schema.optional(Schema.Number),
  host: Schema.optional(Schema.String),
  /** The host reading the journal now. */
  localHost: Schema.String
}) {
  override get message(): string {
    const resolve = (owner: string) => `"lockstep journal resolve ${this.location} --owner ${owner}"`
    const head = `the journal ${this.location} holds migration ${this.migration}`
    if (this.status === "started" && this.inProgress)
      return `${head} in progress (process ${this.pid ?? "?"} on this host): one migration per journal at a time; wait for it to end, or stop it first`
    if (this.status === "started" && this.host !== undefined && this.host !== this.localHost)
      return `${head}, started by process ${this.pid ?? "?"} on ${this.host} and never decided: this host cannot tell whether it still runs there. Check on ${this.host}; once it has stopped, give the group to the source with ${resolve("source")} (the destination must reset)`
    if (this.status === "started")
      return `${head}, started and never decided (its source stopped before deciding): no destination may have resumed it, and no new migration starts until an operator settles it. Give the group to the source with ${resolve("source")} (the destination must reset); only if the destination voted and still holds the validated state, give it to the destination with ${resolve("destination")}`
    if (this.status === "committed")
      return `${head}, committed and never confirmed by the destination: the destination owns the group and a committed migration is never run again, so this side stays as it is. If the destination runs the group, record it with ${resolve("destination")}; if it does not, give the group back with ${resolve("source")}`
    return `${head}, completed: the group left with it (the destination confirmed it runs), so the group here is a stale copy and is not migrated again. If the group came back to this host, record it with ${resolve("source")}`
  }
}

/** The source tried to record COMMIT but the journal already holds ABORT for this migration (the destination fenced it). */
export class DecisionFenced extends Schema.TaggedError<DecisionFenced>()("DecisionFenced", {
  migration: Schema.String
}) {
  override get message(): string {
    return `migration ${this.migration} was already decided ABORT in the journal (fenced by the destination); it cannot commit`
  }
}

/**
 * The destination voted to commit and then lost the source before hearing the decision, and
 * could not read it from the source's journal. Its devices stay validated in STOP: neither
 * running nor reset, until `Journal.ownership` of the source's journal says which side owns the group.
 */
export class CommitInDoubt extends Schema.TaggedError<CommitInDoubt>()("CommitInDoubt", {
  migration: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `migration ${this.migration}: the commit decision is unknown (${this.reason}); the destination devices stay in STOP until the source's journal is read`
  }
}

/**
 * The migration is committed, but the destination group could not be resumed. Either the group
 * was given back (the source's journal records that the destination renounced it, so the source
 * runs again and the destination was reset and parked), or it could not be: the source must never
 * run again, and the destination's devices are not reset (a reset would discard the only state
 * that may run) but kept where the last attempt left them, to be resumed on this side.
 */
export class ResumeIncomplete extends Schema.TaggedError<ResumeIncomplete>()("ResumeIncomplete", {
  migration: Schema.String,
  attempts: Schema.Number,
  reason: Schema.String,
  givenBack: Schema.Boolean
}) {
  override get message(): string {
    const tried = `migration ${this.migration} was committed, but the destination group could not be resumed in ${this.attempts} attempt${this.attempts === 1 ? "" : "s"} (${this.reason})`
    return this.givenBack
      ? `${tried}; the source's journal records that the destination gave the group back, so the source runs it again`
      : `${tried}; the group could not be given back to the source, so its devices keep the migrated state and were not reset: resume them on the destination, and do not run the source`
  }
}

/** The destination's `beforeVote` hook failed. */
export class PreparationFailed extends Schema.TaggedError<PreparationFailed>()("PreparationFailed", {
  reason: Schema.String
}) {
  override get message(): string {
    return `preparing the destination to commit failed: ${this.reason}`
  }
}

/** The session was interrupted from outside (a shutdown, a cancelled migration). */
export class MigrationInterrupted extends Schema.TaggedError<MigrationInterrupted>()("MigrationInterrupted", {}) {
  override get message(): string {
    return "the migration was interrupted"
  }
}

/**
 * A device reported `VFIO_PRECOPY_INFO_REINIT` after the switchover was decided (the destination
 * was told the switchover began): its new initial data would need a switchover-ack the
 * destination no longer gives. QEMU 11.1 fails such a migration; so does Lockstep, and the source
 * group is rolled back to RUNNING.
 */
export class ReinitAfterSwitchover extends Schema.TaggedError<ReinitAfterSwitchover>()("ReinitAfterSwitchover", {
  device: Schema.String,
  initialBytes: Schema.Number
}) {
  override get message(): string {
    return `${this.device} reported new initial data (VFIO_PRECOPY_INFO_REINIT, ${this.initialBytes} bytes) after the switchover was decided; its switchover-ack cannot be asked for again, so the migration fails (as QEMU's does)`
  }
}

/**
 * The source was asked for several channels (`channels` > 1) but has no way to open more
 * connections: no `MigrationChannels` service and no `openChannel` option.
 */
export class ChannelsUnavailable extends Schema.TaggedError<ChannelsUnavailable>()("ChannelsUnavailable", {
  side: SideSchema,
  channels: Schema.Number
}) {
  override get message(): string {
    return `${this.channels} channels were asked for, but the ${this.side} has no way to open or accept more connections (provide MigrationChannels, e.g. by MigrationTransport.connect/accept/listen, or the ${this.side === "source" ? "openChannel" : "acceptChannel"} option)`
  }
}

/**
 * A connection offered as one of the migration's extra channels was refused: it named another
 * migration, a channel not announced or already joined, or devices other than the channel's.
 */
export class ChannelRefused extends Schema.TaggedError<ChannelRefused>()("ChannelRefused", {
  reason: Schema.String
}) {
  override get message(): string {
    return `a connection offered as an extra channel was refused: ${this.reason}`
  }
}

/**
 * A cause the peer sent that this side cannot decode (a peer of another version, or a cause
 * this version has no schema for): its tag and its sentence, as sent.
 */
export class UnknownPeerCause extends Schema.TaggedClass<UnknownPeerCause>()("UnknownPeerCause", {
  tag: Schema.String,
  message: Schema.String
}) {}

/** The causes that have a schema: those a side can send its peer typed. */
const TypedCauses = [
  NotMigratable,
  HandshakeRefused,
  PeerSilent,
  PeerBusy,
  ProtocolViolation,
  DeviceMisbehaved,
  PrecopyLimitReached,
  ReinitAfterSwitchover,
  ChannelsUnavailable,
  ChannelRefused,
  JournalFailed,
  JournalUnsettled,
  DecisionFenced,
  CommitInDoubt,
  ResumeIncomplete,
  PreparationFailed,
  MigrationInterrupted,
  TransitionFailed,
  TransitionRefused,
  DeviceError,
  // The channel's errors: a stream that is not a valid migration stream, a transport that failed.
  FormatError,
  TransportError
] as const

/** A cause a side sends its peer when it aborts, as a schema. */
export const PeerCause = Schema.Union([...TypedCauses, UnknownPeerCause])

/** A cause a side sends its peer when it aborts: its own typed error, or one this side cannot decode. */
export type PeerCause = typeof PeerCause.Type

/**
 * The tag a peer's cause is named by: its own, a device, format or transport error's reason
 * (`SessionFailed`, `Truncated`, `TransportTimeout`, as printed before those errors had one class each), or the one an undecodable cause was sent with.
 */
export const causeTag = (cause: { readonly _tag: string }): string => {
  if (cause instanceof UnknownPeerCause) return cause.tag
  if (cause instanceof DeviceError || cause instanceof FormatError || cause instanceof TransportError)
    return cause.reason._tag
  return cause._tag
}

/** The peer gave up and said why: `cause` is its own typed error, decoded from its `Aborted` message. */
export class PeerAborted extends Schema.TaggedError<PeerAborted>()("PeerAborted", {
  peer: SideSchema,
  phase: PhaseSchema,
  cause: PeerCause
}) {
  /** The tag of the peer's cause, e.g. `TransitionFailed` (a device error by its reason, `SessionFailed`). */
  get tag(): string {
    return causeTag(this.cause)
  }

  override get message(): string {
    return `the ${this.peer} aborted in ${this.phase} (${this.tag}): ${this.cause.message}`
  }
}

/** Every reason a migration can fail, as a schema. */
export const MigrationCause = Schema.Union([...TypedCauses, PeerAborted])

/** Every reason a migration can fail. */
export type MigrationCause =
  | NotMigratable
  | HandshakeRefused
  | PeerAborted
  | PeerSilent
  | PeerBusy
  | ProtocolViolation
  | DeviceMisbehaved
  | PrecopyLimitReached
  | ReinitAfterSwitchover
  | ChannelsUnavailable
  | ChannelRefused
  | JournalFailed
  | JournalUnsettled
  | DecisionFenced
  | CommitInDoubt
  | ResumeIncomplete
  | PreparationFailed
  | MigrationInterrupted
  | TransitionFailed
  | TransitionRefused
  | DeviceError
  | TransportError
  | FormatError

/**
 * A migration failed. Each side reports exactly one: `phase` says where it failed, `origin` on
 * which side (or in the channel between them), `cause` why; `states` is how this side's devices
 * ended. Before commit the source rolls back to RUNNING and the destination resets its devices
 * and parks them in STOP; under the `quarantine` ERROR policy a device in ERROR is left there and
 * a destination device it may write into is kept out of STOP (reset, in RUNNING).
 * `requiredStates` is where the policy wants each device; `recovered` says whether every device
 * is there.
 */
export class MigrationFailed extends Schema.TaggedError<MigrationFailed>()("MigrationFailed", {
  /** The side reporting. */
  side: SideSchema,
  phase: PhaseSchema,
  /** Where the failure began: this side, the peer, or the channel between them. */
  origin: Schema.Literals(["source", "destination", "channel"]),
  cause: MigrationCause,
  /** The migration id agreed in the handshake, if it got that far. */
  migration: Schema.optional(Schema.String),
  /** Whether any device of this side was moved or reset before the failure; if not, nothing needed recovering. */
  touched: Schema.Boolean,
  /** This side's devices after its recovery. */
  states: FinalStates,
  /** Where the recovery had to take each device. */
  requiredStates: Schema.Record(Schema.String, StateSchema),
  /** Devices left in ERROR for diagnosis (the `quarantine` policy). */
  quarantined: Schema.Array(Schema.String),
  /** Every device is in its required state (or, in doubt, the destination's devices wait in STOP). */
  recovered: Schema.Boolean,
  /** What went wrong during the recovery, if anything did, as a sentence. */
  recoveryProblem: Schema.optional(Schema.String)
}) {
  /** How this side ended, as a clause: nothing touched, recovered (and how), or what is not where it must be. */
  get recovery(): string {
    if (!this.touched) return `nothing was touched on the ${this.side}`
    if (!this.recovered) {
      const off = Object.entries(this.requiredStates).flatMap(([id, required]) => {
        const state = this.states[id]
        return state === required ? [] : [`${id} is ${state ?? "UNKNOWN"}, not ${required}`]
      })
      const detail = [...off, ...(this.recoveryProblem === undefined ? [] : [this.recoveryProblem])].join("; ")
      return `recovery incomplete on the ${this.side}${detail === "" ? "" : ` (${detail})`}`
    }
    if (this.cause._tag === "CommitInDoubt") return "the destination devices wait in STOP for the commit decision"
    const home =
      this.side === "source"
        ? "the source group is back in RUNNING"
        : "the destination devices were reset and parked in STOP"
    const kept = Object.entries(this.requiredStates).flatMap(([id, state]) =>
      this.quarantined.includes(id) || state === (this.side === "source" ? "RUNNING" : "STOP") ? [] : [id]
    )
    const except = [
      ...(this.quarantined.length === 0 ? [] : [`${this.quarantined.join(", ")} left in ERROR for diagnosis`]),
      ...(kept.length === 0
        ? []
        : [`${kept.join(", ")} reset and kept in RUNNING, out of STOP, while a quarantined device may write into it`])
    ]
    return except.length === 0 ? home : `${home}, except ${except.join(" and ")} (quarantine policy)`
  }

  override get message(): string {
    const where =
      this.origin === this.side ? "here" : this.origin === "channel" ? "in the channel" : `on the ${this.origin}`
    const states = Object.entries(this.states)
      .map(([id, s]) => `${id}=${s}`)
      .join(", ")
    return `${this.side}: migration failed in ${this.phase} (${where}): ${this.cause.message}; ${this.recovery}; devices now ${states}`
  }
}

const fmt = (ms: number): string => (Number.isFinite(ms) ? ms.toFixed(1) : "∞")
