import type { FinalStates, GroupRuntime, TransitionEvent, TransitionOptions } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import type { FrameWriter } from "@lockstep/stream"
import { Cause, Data, Effect, Exit, Option, Result } from "effect"
import type { ArcTimings } from "./Estimate.js"
import type { EventSink } from "./Events.js"
import type { MigrationCause } from "./MigrationError.js"
import type { ResolvedSessionOptions } from "./Options.js"
import type { Phase, Side } from "./Phase.js"
import { abortedMessage, encodeMessage, type SessionMessage } from "./SessionMessage.js"

/** Internal: a cause, with the phase it happened in. Sessions turn it into one `MigrationFailed`. */
export class SessionFault extends Data.TaggedError("SessionFault")<{
  readonly cause: MigrationCause
  readonly phase: Phase
}> {}

const channelTags: ReadonlySet<string> = new Set([
  "TransportClosed",
  "TransportTimeout",
  "TlsRefused",
  "ConnectFailed",
  "TransportFailed",
  "WrongMagic",
  "UnsupportedVersion",
  "ChecksumMismatch",
  "UnknownFrameType",
  "FrameTooLarge",
  "MalformedFrame",
  "FrameOutOfOrder",
  "UnknownDevice",
  "ChunkAfterDeviceEnd",
  "DuplicateDeviceEnd",
  "DeviceTotalMismatch",
  "DeviceNotEnded",
  "StreamTotalsMismatch",
  "Truncated",
  "DataAfterStreamEnd",
  "PeerSilent"
])

/** Whether a cause is the channel's (transport or stream format) rather than either side's. */
export const isChannelCause = (cause: MigrationCause): boolean => channelTags.has(cause._tag)

/** Where a cause began, seen from `side`. */
export const originOf = (side: Side, cause: MigrationCause): Side | "channel" => {
  if (cause._tag === "PeerAborted" || cause._tag === "PeerBusy") return cause.peer
  if (cause._tag === "HandshakeRefused") return "destination"
  if (cause._tag === "ProtocolViolation") return side === "source" ? "destination" : "source"
  return isChannelCause(cause) ? "channel" : side
}

/** A cause, located in the phase `log` is in (a peer's abort in the peer's phase). */
export const faultIn = (log: PhaseLog, cause: MigrationCause): SessionFault =>
  new SessionFault({ cause, phase: cause._tag === "PeerAborted" ? cause.phase : log.phase })

/** An effect whose failures are located in the phase `log` is in. */
export const locatedIn =
  (log: PhaseLog) =>
  <A, E extends MigrationCause, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, SessionFault, R> =>
    Effect.mapError(effect, (cause) => faultIn(log, cause))

/** Phase bookkeeping: which phase a side is in, how long each took, and the events. */
export class PhaseLog {
  phase: Phase = "handshake"
  private since: number
  readonly durations: Partial<Record<Phase, number>> = {}

  constructor(
    private readonly side: Side,
    private readonly emit: EventSink,
    private readonly now: () => number
  ) {
    this.since = now()
    emit({ _tag: "PhaseStarted", side, phase: this.phase, at: this.since })
  }

  /** Ends the current phase and starts `phase`. */
  enter(phase: Phase): void {
    this.end()
    this.phase = phase
    this.since = this.now()
    this.emit({ _tag: "PhaseStarted", side: this.side, phase, at: this.since })
  }

  /** Ends the current phase (at the end of the session). */
  end(): void {
    if (this.durations[this.phase] !== undefined) return
    const at = this.now()
    this.durations[this.phase] = roundMs(at - this.since)
    this.emit({ _tag: "PhaseEnded", side: this.side, phase: this.phase, at, durationMs: at - this.since })
  }
}

/** The options of a group transition run by a session: its policies, its events forwarded, its arcs timed. */
export const transitionOptions = (
  o: ResolvedSessionOptions,
  side: Side,
  step: string,
  timings: ArcTimings | undefined,
  also?: (event: TransitionEvent) => void
): TransitionOptions => ({
  errorPolicy: o.errorPolicy,
  arcTimeoutMs: o.arcTimeoutMs,
  concurrency: o.arcConcurrency,
  onEvent: (event) => {
    timings?.observe(event)
    also?.(event)
    o.onEvent({ _tag: "GroupTransition", side, step, event })
  }
})

/** Whether a group-transition event moved or reset a device (an arc started, a reset): from then on the side has touched its group. */
export const movesDevice = (event: TransitionEvent): boolean =>
  event._tag === "ArcStarted" || event._tag === "DeviceReset"

/** Every device's state as it reports it now (`UNKNOWN` where it cannot). */
export const readStates = (runtime: GroupRuntime): Effect.Effect<FinalStates> =>
  Effect.map(
    Effect.forEach(
      runtime.group.devices,
      (d) => {
        const device = runtime.devices.get(d.id)
        const state = device === undefined ? Effect.succeed(Option.none<State>()) : Effect.option(device.getState)
        return Effect.map(state, (s) => [d.id, Option.getOrElse(s, (): State | "UNKNOWN" => "UNKNOWN")] as const)
      },
      { concurrency: "unbounded" }
    ),
    (rows) => Object.fromEntries(rows)
  )

/** Sends one session message as a control frame, about `device` (a manifest index) if given. */
export const send = (
  writer: FrameWriter.FrameWriter,
  message: SessionMessage,
  device?: number
): Effect.Effect<void, FrameWriter.FrameWriteError> => {
  const { kind, payload } = encodeMessage(message)
  return writer.control(kind, device === undefined ? { payload } : { device, payload })
}

/** A failure's reason, as the `Aborted` message carries it to the peer. */
export const abortMessage = (phase: Phase, cause: MigrationCause): SessionMessage => abortedMessage(phase, cause)

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

/** Milliseconds to the microsecond: virtual time and pacing make long fractions that mean nothing. */
export const roundMs = (ms: number): number => Math.round(ms * 1000) / 1000

/**
 * Watches a side's group transitions: `touched()` turns true once a device was moved or reset
 * (until then a failure touched nothing). Pass `options` on, in place of the caller's.
 */
export const watchTouched = <O extends { readonly onEvent?: EventSink | undefined }>(
  caller: O
): { readonly options: O; readonly touched: () => boolean } => {
  let touched = false
  return {
    options: {
      ...caller,
      onEvent: (event: Parameters<EventSink>[0]) => {
        if (event._tag === "GroupTransition" && movesDevice(event.event)) touched = true
        caller.onEvent?.(event)
      }
    },
    touched: () => touched
  }
}

/** The clock's time in ms, read without an effect (for events and phase times). */
export const clockNow: Effect.Effect<() => number> = Effect.clockWith((clock) =>
  Effect.succeed(() => clock.currentTimeMillisUnsafe())
)

/**
 * Runs a session's phases; on a failure (an interruption included) runs `onFailure` with its
 * cause, uninterruptibly: a side that failed always recovers its group and says why.
 */
export const recovering = <A, B, E, R1, R2>(
  phases: Effect.Effect<A, SessionFault, R1>,
  onFailure: (cause: Cause.Cause<SessionFault>) => Effect.Effect<B, E, R2>
): Effect.Effect<A | B, E, R1 | R2> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.exit(restore(phases)), (exit) =>
      Exit.isSuccess(exit) ? Effect.succeed<A | B>(exit.value) : onFailure(exit.cause)
    )
  )

/**
 * Ends this side's direction of the channel, telling the peer why first when `say` is given (the
 * peer's `Aborted`, say). A failure here changes nothing: it is only warned about.
 */
export const hangUpOn = <E1, E2>(
  peer: Side,
  end: Effect.Effect<void, E1>,
  say: Effect.Effect<void, E2> | undefined,
  warn: (reason: string) => void
): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (say !== undefined) {
      const told = yield* Effect.exit(Effect.andThen(say, end))
      if (Exit.isFailure(told)) warn(`the ${peer} could not be told: ${describeCause(told.cause)}`)
    } else {
      const ended = yield* Effect.exit(end)
      if (Exit.isFailure(ended)) warn(`could not end the stream to the ${peer}: ${describeCause(ended.cause)}`)
    }
  })
