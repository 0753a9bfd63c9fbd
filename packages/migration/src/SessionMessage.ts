import type { Control, ControlKind, FrameWriter } from "@lockstep/stream"
import { type Effect, Option, Result, Schema } from "effect"
import { RefusalSchema } from "./Handshake.js"
import { causeTag, type MigrationCause, PeerAborted, PeerCause, UnknownPeerCause } from "./MigrationError.js"
import { type Phase, Phases, type Side } from "./Phase.js"

/*
 * The session protocol rides in the stream's control frames: the frame's kind says what sort of
 * message it is, its payload (JSON) says exactly which one. Source → destination travels in the
 * data stream, between chunks; destination → source in the destination's own stream, which has
 * no manifest and names devices by the source's manifest indices.
 *
 *   source → destination                      destination → source
 *   Manifest (handshake offer)
 *                                             accept  Accepted {migration}  | refuse Refused {refusals}
 *                                             commit  Busy {step: prepare, done: false}, then {…, done: true}
 *   switchover-ack    Probe {id}              switchover-ack    ProbeAnswer {id}       (at once, on reading it)
 *   Chunk…                                    (a round: opening probe, chunks, closing probe)
 *   switchover-ack(d) InitialDataSent         switchover-ack(d) InitialDataReceived {resumeEstimateMs}
 *   switchover-ack    SwitchoverBegun
 *   Chunk…, DeviceEnd(d)…
 *                                             commit  Busy {step: validate, done: false}
 *                                             commit  Prepared {validateMs}    (vote: validated, in STOP)
 *   commit  Committed  (COMMIT is journalled)
 *                                             commit  Resumed {resumeMs}       (running), StreamEnd
 *   StreamEnd
 *                   or, when the committed group cannot be resumed:
 *                                             abort   Aborted {…}              (the group is offered back)
 *   commit  Renounced  (the journal records the renunciation: the source owns the group again)
 *   abort   Aborted {phase, tag, reason, cause}  abort   Aborted {…}           (either side, any time before the end)
 *
 * With `channels` N > 1 (see `Channels.ts`), once accepted the source announces the count on
 * channel 0 (`accept Channels {count}`) and closes there, with empty end markers, the devices
 * carried elsewhere; device i travels on channel i mod N. Each extra channel is a stream of its
 * own: preamble, a manifest of its devices (in group order), `accept Joined {migration, channel}`,
 * then its devices' chunks (each pre-copy round closed by a `Probe`), their `InitialDataSent` (by
 * the channel's indices), `SwitchoverBegun`, their end markers and its StreamEnd. The destination never writes on an extra channel: every
 * answer (acknowledgements by group index, probes, votes) goes back on channel 0.
 */

const NonNegative = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))

const messages = {
  Accepted: Schema.TaggedStruct("Accepted", { migration: Schema.String }),
  Refused: Schema.TaggedStruct("Refused", { refusals: Schema.Array(RefusalSchema) }),
  Channels: Schema.TaggedStruct("Channels", { count: Schema.Int.check(Schema.isGreaterThanOrEqualTo(2)) }),
  Joined: Schema.TaggedStruct("Joined", {
    migration: Schema.String,
    channel: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
  }),
  InitialDataSent: Schema.TaggedStruct("InitialDataSent", { bytes: NonNegative }),
  InitialDataReceived: Schema.TaggedStruct("InitialDataReceived", { resumeEstimateMs: NonNegative }),
  // Pre-copy probes: the destination answers each as soon as it reads it, so the source learns
  // the round trip (a probe on an empty channel) and when a round was delivered (a probe after it).
  Probe: Schema.TaggedStruct("Probe", { id: NonNegative }),
  ProbeAnswer: Schema.TaggedStruct("ProbeAnswer", { id: NonNegative }),
  SwitchoverBegun: Schema.TaggedStruct("SwitchoverBegun", {}),
  Busy: Schema.TaggedStruct("Busy", { step: Schema.Literals(["prepare", "validate"]), done: Schema.Boolean }),
  Prepared: Schema.TaggedStruct("Prepared", { validateMs: NonNegative }),
  Committed: Schema.TaggedStruct("Committed", {}),
  Resumed: Schema.TaggedStruct("Resumed", { resumeMs: NonNegative }),
  Renounced: Schema.TaggedStruct("Renounced", {}),
  // `tag` and `reason` name the cause for any peer; `cause` is the typed error itself (its
  // schema's JSON), absent where it has no schema or the sender predates it.
  Aborted: Schema.TaggedStruct("Aborted", {
    phase: Schema.Literals(Phases),
    tag: Schema.String,
    reason: Schema.String,
    cause: Schema.optionalKey(Schema.Json)
  })
}

const SessionMessageSchema = Schema.Union(Object.values(messages))

/** One message of the session protocol. */
export type SessionMessage = typeof SessionMessageSchema.Type

/** The control kind each message travels as. */
const kindOf: Readonly<Record<SessionMessage["_tag"], ControlKind>> = {
  Accepted: "accept",
  Refused: "refuse",
  // Setting up the channels belongs to the handshake.
  Channels: "accept",
  Joined: "accept",
  InitialDataSent: "switchover-ack",
  InitialDataReceived: "switchover-ack",
  Probe: "switchover-ack",
  ProbeAnswer: "switchover-ack",
  SwitchoverBegun: "switchover-ack",
  // The steps on the way to the destination's vote that may outlast the peer timeout.
  Busy: "commit",
  Prepared: "commit",
  Committed: "commit",
  Resumed: "commit",
  Renounced: "commit",
  Aborted: "abort"
}

/** The kind and payload of the control frame carrying `message`. */
export const encodeMessage = (
  message: SessionMessage
): { readonly kind: ControlKind; readonly payload: Uint8Array } => ({
  kind: kindOf[message._tag],
  payload: new TextEncoder().encode(JSON.stringify(message))
})

const decodeJson = Schema.decodeUnknownResult(SessionMessageSchema)
const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The message a control frame carries, or why it is not one (bad JSON, unknown message, kind that does not match). */
export const decodeMessage = (control: Control): Result.Result<SessionMessage, string> => {
  let json: unknown
  try {
    json = JSON.parse(utf8.decode(control.payload))
  } catch (cause) {
    return Result.fail(`a ${control.kind} control frame whose payload is not JSON (${String(cause)})`)
  }
  const decoded = decodeJson(json)
  if (Result.isFailure(decoded)) return Result.fail(`a ${control.kind} control frame with an unknown payload`)
  const message = decoded.success
  return kindOf[message._tag] === control.kind
    ? Result.succeed(message)
    : Result.fail(`${message._tag} in a ${control.kind} control frame`)
}

/** Sends one session message as a control frame, about `device` (a manifest index) if given. */
export const send = (
  writer: FrameWriter.FrameWriter,
  message: SessionMessage,
  device?: number
): Effect.Effect<void, FrameWriter.FrameWriteError> => {
  const { kind, payload } = encodeMessage(message)
  return writer.control(kind, device === undefined ? { payload } : { device, payload })
}

/** The `Aborted` message. */
export type Aborted = Extract<SessionMessage, { readonly _tag: "Aborted" }>

const PeerCauseJson = Schema.toCodecJson(PeerCause)
const isPeerCause = Schema.is(PeerCause)
const encodeCause = Schema.encodeUnknownOption(PeerCauseJson)
const decodeCause = Schema.decodeUnknownOption(PeerCauseJson)

/**
 * The `Aborted` message telling the peer why this side gives up: the cause by tag and sentence,
 * and the typed cause itself where it has a schema.
 */
export const abortedMessage = (phase: Phase, cause: MigrationCause): Aborted => {
  const encoded = isPeerCause(cause) ? encodeCause(cause) : Option.none()
  return {
    _tag: "Aborted",
    phase,
    tag: causeTag(cause),
    reason: cause.message,
    ...(Option.isSome(encoded) ? { cause: encoded.value } : {})
  }
}

/**
 * The peer's `Aborted` as this side's error: its typed cause decoded, or, where it cannot be
 * (no cause sent, or one this version does not know), an `UnknownPeerCause` with its words.
 */
export const peerAbortedOf = (peer: Side, message: Aborted): PeerAborted => {
  const decoded = message.cause === undefined ? Option.none() : decodeCause(message.cause)
  return new PeerAborted({
    peer,
    phase: message.phase,
    cause: Option.getOrElse(decoded, () => new UnknownPeerCause({ tag: message.tag, message: message.reason }))
  })
}
