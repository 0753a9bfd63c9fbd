/*
 * The session protocol's messages as they cross the wire: each control frame's JSON payload
 * decodes back to the message that was sent, and what an older peer sends is still understood.
 */
import { describe, expect, it } from "@effect/vitest"
import { ArcTimedOut, StateUnreadable, TransitionFailed, TransitionRefused } from "@lockstep/coordinator"
import { ArcFailed, DeviceError } from "@lockstep/device"
import {
  ChannelRefused,
  ChannelsUnavailable,
  CommitInDoubt,
  DecisionFenced,
  DeviceMisbehaved,
  HandshakeRefused,
  JournalFailed,
  JournalUnsettled,
  type MigrationCause,
  MigrationInterrupted,
  NotMigratable,
  PeerAborted,
  PeerBusy,
  PeerSilent,
  PrecopyLimitReached,
  PreparationFailed,
  ProtocolViolation,
  ReinitAfterSwitchover,
  ResumeIncomplete,
  UnknownPeerCause
} from "@lockstep/migration"
import {
  ChecksumMismatch,
  type Control,
  type ControlKind,
  FormatError,
  TransportError,
  TransportTimeout
} from "@lockstep/stream"
import { Result } from "effect"
import {
  abortedMessage,
  decodeMessage,
  encodeMessage,
  peerAbortedOf,
  type SessionMessage
} from "../src/SessionMessage.js"

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))

const roundTrip = (message: SessionMessage) => {
  const { kind, payload } = encodeMessage(message)
  return {
    kind,
    payload: JSON.parse(new TextDecoder().decode(payload)),
    back: decodeMessage({ _tag: "Control", kind, device: undefined, payload })
  }
}

describe("session messages on the wire", () => {
  it("refusals are tagged NoSuchDevice and DestinationNotMigratable, never an error's tag", () => {
    const refusals = [
      { _tag: "NoSuchDevice", device: "gpu9" },
      { _tag: "DestinationNotMigratable", reason: "the destination group is not migratable: gpu0 lacks P2P" }
    ] as const
    const refused: SessionMessage = { _tag: "Refused", refusals }
    const { kind, payload, back } = roundTrip(refused)
    expect(kind).toBe("refuse")
    expect(payload).toEqual({ _tag: "Refused", refusals })
    expect(back).toEqual(Result.succeed(refused))
  })

  it("refusals tagged UnknownDevice or NotMigratable (a peer from before the renames) are read by their new tags", () => {
    const reason = "the destination group is not migratable: nic0 writes into gpu0 without P2P"
    const old = json({
      _tag: "Refused",
      refusals: [
        { _tag: "UnknownDevice", device: "gpu9" },
        { _tag: "NotMigratable", reason }
      ]
    })
    expect(decodeMessage({ _tag: "Control", kind: "refuse", device: undefined, payload: old })).toEqual(
      Result.succeed({
        _tag: "Refused",
        refusals: [
          { _tag: "NoSuchDevice", device: "gpu9" },
          { _tag: "DestinationNotMigratable", reason }
        ]
      })
    )
  })
})

describe("the messages that set up several channels", () => {
  it("Channels and Joined travel as accept control frames and come back as sent", () => {
    for (const message of [
      { _tag: "Channels", count: 3 },
      { _tag: "Joined", migration: "00ff", channel: 2 }
    ] as const) {
      const { kind, payload, back } = roundTrip(message)
      expect(kind).toBe("accept")
      expect(payload).toEqual(message)
      expect(back).toEqual(Result.succeed(message))
    }
  })

  it("a channel count below 2 or a channel 0 that joins is not a message", () => {
    for (const bad of [
      { _tag: "Channels", count: 1 },
      { _tag: "Channels", count: 2.5 },
      { _tag: "Joined", migration: "00ff", channel: 0 }
    ])
      expect(
        Result.isFailure(decodeMessage({ _tag: "Control", kind: "accept", device: undefined, payload: json(bad) }))
      ).toBe(true)
  })
})

const control = (kind: ControlKind, payload: Uint8Array): Control => ({
  _tag: "Control",
  kind,
  device: undefined,
  payload
})

/** `cause` sent by one side in an `Aborted`, as the other side reads it. */
const abortedAcross = (cause: MigrationCause) => {
  const { kind, payload } = encodeMessage(abortedMessage("switchover", cause))
  const decoded = decodeMessage(control(kind, payload))
  if (Result.isFailure(decoded) || decoded.success._tag !== "Aborted") throw new Error(`not an Aborted: ${kind}`)
  return { sent: decoded.success, aborted: peerAbortedOf("source", decoded.success) }
}

const arc = { from: "PRE_COPY_P2P", to: "STOP_COPY" } as const

const deviceErrors: ReadonlyArray<DeviceError> = [
  DeviceError.arcRejected({ device: "gpu0", arc, code: "EINVAL", reason: "not one arc" }),
  DeviceError.arcFailed({ device: "gpu0", arc, code: "EIO", reason: "injected", stateAfter: "ERROR" }),
  DeviceError.sessionFailed({ device: "gpu1", operation: "write", code: "ENOSPC", reason: "full", state: "RESUMING" }),
  DeviceError.resetFailed({ device: "nic0", code: "ETIMEDOUT", reason: "no answer within 50 ms" }),
  DeviceError.unreachable({ device: "nvme0", operation: "getState", reason: "the server went away" })
]

/** One of every cause a side may send, with fields of every kind (nested errors, undefined, ∞). */
const causes: ReadonlyArray<MigrationCause> = [
  new NotMigratable({
    side: "destination",
    blockers: [{ device: "gpu0", edges: [["gpu0", "gpu1"]], edgeCount: 1, reason: "gpu0 writes into gpu1 without P2P" }]
  }),
  new HandshakeRefused({
    refusals: [
      { _tag: "NoSuchDevice", device: "gpu9" },
      { _tag: "FlagsMismatch", device: "gpu1", offered: ["STOP_COPY"], local: ["STOP_COPY", "P2P"] }
    ]
  }),
  new PeerSilent({ waitingFor: "its vote", timeoutMs: 5000 }),
  new PeerBusy({ peer: "destination", step: "validate", timeoutMs: 5000 }),
  new ProtocolViolation({ expected: "Prepared", got: "a Chunk frame" }),
  new DeviceMisbehaved({ device: "gpu0", reason: "NoData from a STOP_COPY read" }),
  new PrecopyLimitReached({
    limit: "rounds",
    rounds: 30,
    estimateMs: Number.POSITIVE_INFINITY,
    downtimeLimitMs: 300,
    unacknowledged: ["gpu1"]
  }),
  new PrecopyLimitReached({ limit: "stalled", rounds: 4, estimateMs: 512.5, downtimeLimitMs: 300, unacknowledged: [] }),
  new ReinitAfterSwitchover({ device: "gpu0", initialBytes: 4096 }),
  new ChannelsUnavailable({ side: "source", channels: 4 }),
  new ChannelRefused({ reason: "it belongs to migration 00ff, not 1234" }),
  new JournalFailed({ operation: "decide", location: "/var/lib/lockstep/j", reason: "disk full" }),
  new JournalUnsettled({
    location: "/var/lib/lockstep/j",
    migration: "m-1",
    status: "started",
    inProgress: false,
    pid: undefined,
    host: "hostB",
    localHost: "hostA"
  }),
  new DecisionFenced({ migration: "m-1" }),
  new CommitInDoubt({ migration: "m-1", reason: "the source's journal cannot be read" }),
  new ResumeIncomplete({ migration: "m-1", attempts: 3, reason: "gpu2: STOP → RUNNING_P2P failed", givenBack: true }),
  new PreparationFailed({ reason: "no hugepages" }),
  new MigrationInterrupted(),
  new TransitionFailed({
    cause: deviceErrors[1] as DeviceError,
    device: "gpu0",
    arc,
    startStates: { gpu0: "PRE_COPY_P2P", gpu1: "PRE_COPY" },
    finalStates: { gpu0: "ERROR", gpu1: "UNKNOWN" },
    rolledBack: false,
    quarantined: ["gpu0"],
    held: [],
    rollbackCause: new ArcTimedOut({ device: "gpu1", arc: { from: "PRE_COPY", to: "RUNNING" }, timeoutMs: 50 })
  }),
  new TransitionRefused({ cause: new StateUnreadable({ device: "gpu1" }) }),
  ...deviceErrors
]

describe("a peer's abort on the wire", () => {
  for (const cause of causes) {
    const name = cause._tag === "DeviceError" ? `DeviceError (${cause.reason._tag})` : cause._tag
    it(`${name} comes back as the same class with the same fields`, () => {
      const { sent, aborted } = abortedAcross(cause)
      expect(sent.cause).toBeDefined()
      expect(aborted).toBeInstanceOf(PeerAborted)
      expect(aborted).toMatchObject({ peer: "source", phase: "switchover" })
      expect(aborted.cause).toBeInstanceOf(cause.constructor)
      expect(aborted.cause).toEqual(cause)
      expect(aborted.cause.message).toBe(cause.message)
      // What a peer that cannot decode the cause reads: the tag (a device error's by its reason) and the sentence.
      const tag = cause._tag === "DeviceError" ? cause.reason._tag : cause._tag
      expect([sent.tag, sent.reason]).toEqual([tag, cause.message])
      expect(aborted.message).toBe(`the source aborted in switchover (${tag}): ${cause.message}`)
    })
  }

  it("a device error keeps its reason's class and the arc, errno and state it names", () => {
    const { aborted } = abortedAcross(deviceErrors[1] as DeviceError)
    const reason = aborted.cause instanceof DeviceError ? aborted.cause.reason : undefined
    expect(reason).toBeInstanceOf(ArcFailed)
    expect(reason).toMatchObject({ device: "gpu0", arc, code: "EIO", reason: "injected", stateAfter: "ERROR" })
  })

  it("the channel's errors (a transport's, a stream format's) arrive as the same classes", () => {
    const timeout = TransportError.transportTimeout({ operation: "read", millis: 200 })
    const across = abortedAcross(timeout)
    expect(across.sent.cause).toBeDefined()
    expect(across.aborted.cause).toBeInstanceOf(TransportError)
    expect(across.aborted.cause instanceof TransportError && across.aborted.cause.reason).toBeInstanceOf(
      TransportTimeout
    )
    expect(across.aborted.cause).toEqual(timeout)
    expect(across.aborted.message).toBe(
      "the source aborted in switchover (TransportTimeout): read timed out after 200 ms"
    )
    const corrupt = FormatError.checksumMismatch({
      offset: 4096,
      region: "body",
      frameType: "Chunk",
      expected: 1,
      actual: 2
    })
    const format = abortedAcross(corrupt)
    expect(format.aborted.cause).toBeInstanceOf(FormatError)
    expect(format.aborted.cause instanceof FormatError && format.aborted.cause.reason).toBeInstanceOf(ChecksumMismatch)
    expect(format.aborted.cause).toEqual(corrupt)
    expect(format.aborted.tag).toBe("ChecksumMismatch")
    expect(format.aborted.cause.message).toBe(
      "offset 4096: Chunk body checksum mismatch (declared 0x00000001, computed 0x00000002)"
    )
  })

  it("an abort from a peer that sends no cause, or one this side does not know, keeps its words", () => {
    const old = { _tag: "Aborted", phase: "precopy", tag: "SessionFailed", reason: "gpu1: write failed" }
    const foreign = { ...old, tag: "QuotaExceeded", reason: "over quota", cause: { _tag: "QuotaExceeded", limit: 3 } }
    for (const [wire, tag, reason] of [
      [old, "SessionFailed", "gpu1: write failed"],
      [foreign, "QuotaExceeded", "over quota"]
    ] as const) {
      const decoded = decodeMessage(control("abort", json(wire)))
      expect(Result.isSuccess(decoded)).toBe(true)
      if (Result.isFailure(decoded) || decoded.success._tag !== "Aborted") return
      const aborted = peerAbortedOf("destination", decoded.success)
      expect(aborted.cause).toBeInstanceOf(UnknownPeerCause)
      expect(aborted.cause).toMatchObject({ tag, message: reason })
      expect(aborted.message).toBe(`the destination aborted in precopy (${tag}): ${reason}`)
    }
  })
})
