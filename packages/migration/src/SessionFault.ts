import { Cause, Data, Effect, Option, Result } from "effect"
import { type MigrationCause, MigrationInterrupted, PeerSilent } from "./MigrationError.js"
import type { Phase, Side } from "./Phase.js"
import type { PhaseLog } from "./PhaseLog.js"

/*
 * A session's failures: a cause located in the phase it happened in, where it began (this side,
 * the peer or the channel), and how it reads, to a person and to the peer.
 */

/** Internal: a cause, with the phase it happened in. Sessions turn it into one `MigrationFailed`. */
export class SessionFault extends Data.TaggedError("SessionFault")<{
  readonly cause: MigrationCause
  readonly phase: Phase
}> {}

const channelTags: ReadonlySet<string> = new Set(["TransportError", "FormatError", "PeerSilent"])

/** Whether a cause is the channel's (transport or stream format) rather than either side's. */
export const isChannelCause = (cause: MigrationCause): boolean => channelTags.has(cause._tag)

/** Where a cause began, seen from `side`. */
export const originOf = (side: Side, cause: MigrationCause): Side | "channel" => {
  if (cause._tag === "PeerAborted" || cause._tag === "PeerBusy") return cause.peer
  if (cause._tag === "HandshakeRefused") return "destination"
  if (cause._tag === "ProtocolViolation") return side === "source" ? "destination" : "source"
  return isChannelCause(cause) ? "channel" : side
}

/**
 * `effect`, failing with `PeerSilent` (waiting for `what`, located by `log`) once it has taken
 * longer than the peer timeout.
 */
export const withinPeerTimeout =
  (log: PhaseLog, timeoutMs: number, what: string) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SessionFault, R> =>
    Effect.timeoutOrElse(effect, {
      duration: timeoutMs,
      orElse: () => Effect.fail(faultIn(log, new PeerSilent({ waitingFor: what, timeoutMs })))
    })

/** A cause, located in the phase `log` is in (a peer's abort in the peer's phase). */
export const faultIn = (log: PhaseLog, cause: MigrationCause): SessionFault =>
  new SessionFault({ cause, phase: cause._tag === "PeerAborted" ? cause.phase : log.phase })

/** The fault a session's phases ended with: their typed failure, else an interruption in the phase `log` is in. */
export const faultOfCause = (log: PhaseLog, cause: Cause.Cause<SessionFault>): SessionFault =>
  Option.getOrElse(
    Cause.findErrorOption(cause),
    () => new SessionFault({ cause: new MigrationInterrupted(), phase: log.phase })
  )

/** An effect whose failures are located in the phase `log` is in. */
export const locatedIn =
  (log: PhaseLog) =>
  <A, E extends MigrationCause, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, SessionFault, R> =>
    Effect.mapError(effect, (cause) => faultIn(log, cause))

/** One sentence for a failure's cause: its typed error's message, never a stack trace. */
export const describeCause = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) return messageOf(error.value)
  if (Cause.hasInterruptsOnly(cause)) return "it was interrupted"
  const defect = Cause.findDefect(cause)
  return Result.isSuccess(defect) ? messageOf(defect.success) : "it failed for an unknown reason"
}

const messageOf = (e: unknown): string =>
  typeof e === "object" && e !== null && "message" in e && typeof e.message === "string" ? e.message : String(e)
