import type { ErrorPolicy } from "@lockstep/coordinator"
import type { Transport, TransportError } from "@lockstep/stream"
import { Effect, Option, type Scope } from "effect"
import { type Compatibility, none } from "./Compatibility.js"
import type { EventSink } from "./Events.js"
import { defaultJournalPath, file, type Journal } from "./Journal.js"
import { MigrationEvents } from "./MigrationEvents.js"
import { MigrationJournal } from "./MigrationJournal.js"

/** Options both sides share. */
export interface SessionOptions {
  /** What to do with a device found in ERROR after a failed group transition (the coordinator's policy). Default `reset`. */
  readonly errorPolicy?: ErrorPolicy | undefined
  /** Per-arc timeout of every group transition, in ms. Default 30 000. */
  readonly arcTimeoutMs?: number | undefined
  /** At most this many arcs in flight at once in a group transition (the coordinator's `concurrency`). Default: unbounded. */
  readonly arcConcurrency?: number | undefined
  /**
   * At most this many devices read (source: pre-copy rounds and the drain, which takes devices
   * in the order they reach STOP_COPY) or written (destination) at once. Default: unbounded.
   */
  readonly ioConcurrency?: number | undefined
  /**
   * Longest wait for the peer: for an expected message, and for the channel to accept one
   * write. Past it the peer counts as silent and the migration fails. Default 60 000 ms
   * (longer than the default arc timeout, so that a source stuck in a hung arc reports the arc,
   * not silence).
   */
  readonly peerTimeoutMs?: number | undefined
  /** Compatibility data of the backend. Default: none (kinds and flags decide alone). */
  readonly compatibility?: Compatibility | undefined
  /** Told of every event, synchronously. Default: the `MigrationEvents` service, if provided. */
  readonly onEvent?: EventSink | undefined
}

/** What the source does when pre-copy reaches a limit with the estimate still over the downtime limit. */
export type LimitPolicy = "switch" | "abort"

/** Options of the source side. */
export interface SourceOptions extends SessionOptions {
  /**
   * Where the commit decision is recorded. Default: the `MigrationJournal` service, if provided;
   * else the file `lockstep-journal.json` in the working directory.
   */
  readonly journal?: Journal | undefined
  /** Whether to pre-copy (devices with PRE_COPY). Default `true`. */
  readonly precopy?: boolean | undefined
  /** Switch over once the downtime estimate is at most this, in ms. Default 300. */
  readonly downtimeLimitMs?: number | undefined
  /** The most bytes per second the source sends; reads slow down to match. Default: no limit. */
  readonly bandwidthLimit?: number | undefined
  /** The most pre-copy rounds. Default 30. */
  readonly maxRounds?: number | undefined
  /** The longest pre-copy, in ms. Default 60 000. */
  readonly maxPrecopyMs?: number | undefined
  /** At a round or time limit, or when pre-copy stalls over the limit: switch anyway or abort. Default `switch`. */
  readonly onLimit?: LimitPolicy | undefined
  /** Largest read from a device, and largest chunk frame. Default 256 KiB. */
  readonly chunkBytes?: number | undefined
  /** Arc latency the estimate assumes before any arc has been observed, in ms. Default 1. */
  readonly assumedArcLatencyMs?: number | undefined
  /**
   * Connections the device data spreads over (QEMU's multifd): device i (manifest index) travels
   * on channel i mod `channels`; channel 0, the session's transport, also carries the handshake
   * and every session message. Default 1: one connection, the stream exactly as without channels.
   */
  readonly channels?: number | undefined
  /**
   * Opens one more connection to the destination, closed with the scope. Default: the
   * `MigrationChannels` service, if provided. Needed only with `channels` > 1.
   */
  readonly openChannel?: Effect.Effect<Transport, TransportError, Scope.Scope> | undefined
}

/** Options of the destination side. */
export interface DestinationOptions extends SessionOptions {
  /**
   * The source's journal, when this side can reach it (same host, shared storage). If the
   * channel is lost after the vote, the destination reads the decision from it, fencing an
   * undecided migration with ABORT. Without it, that case fails with `CommitInDoubt` and the
   * devices wait in STOP.
   */
  readonly decisionJournal?: Journal | undefined
  /**
   * Runs once the group has validated its data (STOP) and before the destination votes to
   * commit: the place to load the rest of a VM, or to check the loaded state. A failure aborts.
   */
  readonly beforeVote?: Effect.Effect<void, { readonly message: string }> | undefined
  /**
   * How many times a committed group's resume is tried before the destination gives up and
   * reports `ResumeIncomplete` (each failed attempt rolls the group back to STOP, arc by arc,
   * without a reset). Default 3.
   */
  readonly resumeAttempts?: number | undefined
  /** Makes the migration id sent in the handshake. Default: 16 random hex digits. */
  readonly migrationId?: (() => string) | undefined
  /** Items each device's write queue holds before the reader waits (back-pressure). Default 4. */
  readonly queueDepth?: number | undefined
  /** The most channels a source may announce; more is refused (`ChannelRefused`). Default 16. */
  readonly maxChannels?: number | undefined
  /**
   * Accepts the next connection of the source's extra channels, closed with the scope. Default:
   * the `MigrationChannels` service, if provided. Needed only when the source announces channels.
   */
  readonly acceptChannel?: Effect.Effect<Transport, TransportError, Scope.Scope> | undefined
}

/**
 * The options with what the context provides filled in where they give nothing: the event sink
 * (`MigrationEvents`) and the journal (`MigrationJournal`, under `key`: the source's `journal`,
 * the destination's `decisionJournal`).
 */
export const fromContext = <O extends SessionOptions & { readonly [K in J]?: Journal | undefined }, J extends string>(
  options: O,
  key: J
): Effect.Effect<O> =>
  Effect.gen(function* () {
    const onEvent = options.onEvent ?? Option.getOrUndefined(yield* Effect.serviceOption(MigrationEvents))
    const journal = options[key] ?? Option.getOrUndefined(yield* Effect.serviceOption(MigrationJournal))
    return { ...options, onEvent, [key]: journal }
  })

/** Session options with every default applied. */
export interface ResolvedSessionOptions {
  readonly errorPolicy: ErrorPolicy
  readonly arcTimeoutMs: number
  readonly arcConcurrency: number | undefined
  readonly ioConcurrency: number | "unbounded"
  readonly peerTimeoutMs: number
  readonly compatibility: Compatibility
  readonly onEvent: EventSink
  /** How long a failing side waits for its peer to hang up before closing the channel. */
  readonly closeGraceMs: number
}

const noEvents: EventSink = () => {}

const positive = (n: number | undefined): number | undefined =>
  n !== undefined && Number.isFinite(n) && n > 0 ? n : undefined

/** Applies the shared defaults. */
export const resolveSession = (o: SessionOptions): ResolvedSessionOptions => {
  const peerTimeoutMs = positive(o.peerTimeoutMs) ?? 60_000
  return {
    errorPolicy: o.errorPolicy ?? "reset",
    arcTimeoutMs: positive(o.arcTimeoutMs) ?? 30_000,
    arcConcurrency: positive(o.arcConcurrency),
    ioConcurrency: positive(o.ioConcurrency) ?? "unbounded",
    peerTimeoutMs,
    compatibility: o.compatibility ?? none,
    onEvent: o.onEvent ?? noEvents,
    closeGraceMs: Math.min(peerTimeoutMs, 2_000)
  }
}

/** Source options with every default applied. */
export interface ResolvedSourceOptions extends ResolvedSessionOptions {
  readonly journal: Journal
  readonly precopy: boolean
  readonly downtimeLimitMs: number
  readonly bandwidthLimit: number
  readonly maxRounds: number
  readonly maxPrecopyMs: number
  readonly onLimit: LimitPolicy
  readonly chunkBytes: number
  readonly assumedArcLatencyMs: number
  /** At least 1. */
  readonly channels: number
  readonly openChannel: Effect.Effect<Transport, TransportError, Scope.Scope> | undefined
}

/** Applies the source defaults. */
export const resolveSource = (o: SourceOptions): ResolvedSourceOptions => ({
  ...resolveSession(o),
  journal: o.journal ?? file(defaultJournalPath),
  precopy: o.precopy ?? true,
  downtimeLimitMs: o.downtimeLimitMs ?? 300,
  bandwidthLimit: positive(o.bandwidthLimit) ?? Number.POSITIVE_INFINITY,
  maxRounds: Math.max(1, Math.floor(o.maxRounds ?? 30)),
  maxPrecopyMs: o.maxPrecopyMs ?? 60_000,
  onLimit: o.onLimit ?? "switch",
  chunkBytes: Math.max(1, Math.floor(positive(o.chunkBytes) ?? 256 * 1024)),
  assumedArcLatencyMs: o.assumedArcLatencyMs ?? 1,
  channels: Math.max(1, Math.floor(positive(o.channels) ?? 1)),
  openChannel: o.openChannel
})
