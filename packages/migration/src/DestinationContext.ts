import type { GroupRuntime } from "@lockstep/coordinator"
import { type Frame, FrameReader, type FrameWriter, type Transport, withTimeouts } from "@lockstep/stream"
import { Effect, Option, Result } from "effect"
import { ArcTimings } from "./Estimate.js"
import type { DeviceTotals, EventSink } from "./Events.js"
import { type MigrationCause, ProtocolViolation } from "./MigrationError.js"
import type { DestinationOptions, ResolvedSessionOptions } from "./Options.js"
import { PhaseLog } from "./PhaseLog.js"
import { faultIn, locatedIn, type SessionFault } from "./SessionFault.js"
import { decodeMessage, peerAbortedOf, type SessionMessage } from "./SessionMessage.js"

/** How far the destination got: what its summary and its recovery need. Each phase records its part. */
export interface DestinationProgress {
  migration: string | undefined
  /** The vote has begun to go out: from here the decision must be learnt, never guessed. */
  voted: boolean
  /** The decision is known (received, or read from the source's journal). */
  decided: boolean
  /** The decision is COMMIT: from here the devices hold the only state that may run, never to be reset. */
  committed: boolean
  /** Committed, the resume failed, and the source's journal records that the group was given back. */
  givenBack: boolean
  writer: FrameWriter.FrameWriter | undefined
  bytes: number
  validateMs: number
  resumeMs: number
  /** The decision was read from the source's journal, the channel being lost. */
  fromJournal: boolean
  totals: Map<string, DeviceTotals>
}

/** What every phase of the destination session shares: its options, clock, progress and reader. */
export interface DestinationContext {
  readonly runtime: GroupRuntime
  readonly transport: Transport
  /** The transport with the peer timeout on reads and writes. */
  readonly link: Transport
  readonly o: ResolvedSessionOptions
  /** The caller's options, for what only the destination has (journal, vote hook, attempts). */
  readonly options: DestinationOptions
  readonly now: () => number
  readonly emit: EventSink
  readonly startedAt: number
  readonly log: PhaseLog
  readonly timings: ArcTimings
  readonly ids: ReadonlyArray<string>
  readonly s: DestinationProgress
  readonly reader: FrameReader.FrameReader
  /** Whether a device of this side has been moved or reset: until then a failure touched nothing. */
  readonly touched: () => boolean
}

/** Builds the destination session's shared context; `touched` reads whether the group was touched. */
export const makeDestinationContext = (
  runtime: GroupRuntime,
  transport: Transport,
  o: ResolvedSessionOptions,
  options: DestinationOptions,
  now: () => number,
  touched: () => boolean
): Effect.Effect<DestinationContext> =>
  Effect.gen(function* () {
    const startedAt = now()
    const log = new PhaseLog("destination", o.onEvent, now)
    const link = withTimeouts(transport, { read: o.peerTimeoutMs, write: o.peerTimeoutMs })
    return {
      runtime,
      transport,
      link,
      o,
      options,
      now,
      emit: o.onEvent,
      startedAt,
      log,
      timings: new ArcTimings(1),
      ids: runtime.group.devices.map((d) => d.id),
      s: {
        migration: undefined,
        voted: false,
        decided: false,
        committed: false,
        givenBack: false,
        writer: undefined,
        bytes: 0,
        validateMs: 0,
        resumeMs: 0,
        fromJournal: false,
        totals: new Map()
      },
      reader: yield* FrameReader.make(link),
      touched
    }
  })

/** The source broke the protocol: `expected`, but `got`. */
export const violation = (ctx: DestinationContext, expected: string, got: string): SessionFault =>
  faultIn(ctx.log, new ProtocolViolation({ expected, got }))

/** The next frame; the stream's end here is a violation (`what` was expected). */
export const nextFrame = (ctx: DestinationContext, what: string): Effect.Effect<Frame, SessionFault> =>
  nextFrameOf(ctx, ctx.reader, what)

/**
 * The next frame of `reader` (channel 0's or an extra channel's); its end here is a violation.
 * From a reader that lends (`reader.lends`), a chunk's payload is valid until the next frame:
 * the loader copies it (`LoadPlan.lends`).
 */
export const nextFrameOf = (
  ctx: DestinationContext,
  reader: FrameReader.FrameReader,
  what: string
): Effect.Effect<Frame, SessionFault> =>
  locatedIn(ctx.log)(reader.next).pipe(
    Effect.flatMap((frame) =>
      Option.isSome(frame) ? Effect.succeed(frame.value) : Effect.fail(violation(ctx, what, "the end of the stream"))
    )
  )

/** The session message a frame carries; the source's `Aborted` fails with its reason. */
export const messageOf = (
  ctx: DestinationContext,
  frame: Frame,
  what: string
): Effect.Effect<SessionMessage, SessionFault> => {
  if (frame._tag !== "Control") return Effect.fail(violation(ctx, what, `a ${frame._tag} frame`))
  const decoded = decodeMessage(frame)
  if (Result.isFailure(decoded)) return Effect.fail(violation(ctx, what, decoded.failure))
  const message = decoded.success
  return message._tag === "Aborted"
    ? Effect.fail(faultIn(ctx.log, peerAbortedOf("source", message)))
    : Effect.succeed(message)
}

/** Reads until the source's stream ends (its totals checked by the decoder). */
export const readToEnd = (ctx: DestinationContext): Effect.Effect<void, MigrationCause> =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* ctx.reader.next
      if (Option.isNone(frame)) return
    }
  })

/**
 * Reads on, past data and messages of other kinds, to the source's next message tagged `tag`:
 * undefined if its stream ends first.
 */
export const nextMessageTagged = <T extends SessionMessage["_tag"]>(
  ctx: DestinationContext,
  tag: T
): Effect.Effect<Extract<SessionMessage, { readonly _tag: T }> | undefined, MigrationCause> =>
  Effect.gen(function* () {
    for (;;) {
      const next = yield* ctx.reader.next
      if (Option.isNone(next)) return undefined
      const frame = next.value
      if (frame._tag !== "Control") continue
      const decoded = decodeMessage(frame)
      if (Result.isSuccess(decoded) && isTagged(decoded.success, tag)) return decoded.success
    }
  })

const isTagged = <T extends SessionMessage["_tag"]>(
  message: SessionMessage,
  tag: T
): message is Extract<SessionMessage, { readonly _tag: T }> => message._tag === tag
