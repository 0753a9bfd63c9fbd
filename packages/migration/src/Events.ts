import type { FinalStates, TransitionEvent } from "@lockstep/coordinator"
import { type Cause, Effect, Queue, Stream } from "effect"
import type { AssumedStopCopyLength, DowntimeEstimate } from "./Estimate.js"
import type { Phase, Side } from "./Phase.js"

/**
 * Why pre-copy ended (the rule is `Convergence.ts`'s):
 * - `converged`: the downtime estimate is under the limit and every device's initial data is acknowledged;
 * - `stalled`: the remaining bytes stopped shrinking (a round left them not 10% below the least
 *   before it), or nothing is left to pre-copy, with the estimate still over the limit (policy `switch`);
 * - `rounds` / `time`: the round or time limit was reached (policy `switch`);
 * - `no-precopy`: pre-copy is off, or no device supports it.
 */
export type SwitchoverReason = "converged" | "rounds" | "time" | "stalled" | "no-precopy"

/** Why the source switched over, and the figures it decided on. */
export interface SwitchoverDecision {
  readonly reason: SwitchoverReason
  /** The reason as one sentence, with its figures. */
  readonly why: string
  readonly rounds: number
  /** The downtime estimate that decided, in ms; `undefined` without pre-copy. */
  readonly estimateMs: number | undefined
  readonly downtimeLimitMs: number
  /**
   * The bytes a switchover would have sent (the STOP_COPY lengths the devices reported) before
   * pre-copy, then after each round.
   */
  readonly remainingBytes: ReadonlyArray<number>
  /** What the channel delivered over the recent rounds, in bytes per second. */
  readonly deliveredBytesPerSecond: number | undefined
  /** What the devices dirtied over the recent rounds, in bytes per second. */
  readonly dirtyBytesPerSecond: number | undefined
  /** The channel's round trip, measured on an empty channel, in ms. */
  readonly roundTripMs: number | undefined
}

/** Bytes moved for one device. */
export interface DeviceTotals {
  /** Sent (source) or received (destination) during pre-copy. */
  readonly precopyBytes: number
  /** Sent or received after the switchover began. */
  readonly stopCopyBytes: number
}

/** What both sides report at the end of a successful migration. */
export interface SummaryBase {
  readonly side: Side
  readonly migration: string
  /** Chunk payload bytes of the whole stream. */
  readonly bytes: number
  readonly devices: Readonly<Record<string, DeviceTotals>>
  /** Duration of each phase this side went through, in ms. */
  readonly phases: Readonly<Partial<Record<Phase, number>>>
  readonly totalMs: number
  /** This side's devices at the end. */
  readonly states: FinalStates
}

/** The source's summary: the source group stays stopped (STOP_COPY), the destination owns the group. */
export interface SourceSummary extends SummaryBase {
  readonly side: "source"
  readonly rounds: number
  readonly switchover: SwitchoverReason
  /** Why the switchover came when it did, with the figures. */
  readonly decision: SwitchoverDecision
  /** The estimate that decided the switchover. */
  readonly estimate: DowntimeEstimate | undefined
  /**
   * From the first switchover arc to the destination group RUNNING: measured here up to the
   * decision, plus the one-way latency of the decision (half the round trip of COMMIT and the
   * confirmation, less the destination's resume), plus the resume time the destination reports.
   * `undefined` when the destination did not confirm: a resume that may never have happened has
   * no downtime.
   */
  readonly downtimeMs: number | undefined
  readonly downtimeLimitMs: number
  /** How far `downtimeMs` is over `downtimeLimitMs`, in ms; `undefined` when within (or unknown). */
  readonly downtimeLimitMissedByMs: number | undefined
  /** The critical path of the switchover arcs actually run (the floor the arcs alone impose). */
  readonly switchoverCriticalPathMs: number
  /**
   * Devices whose STOP_COPY length the estimates had to assume (they cannot report it: a
   * vfio-user server without MIG_DATA_SIZE), and what was assumed. Empty when every device told.
   */
  readonly assumedStopCopyLengths: ReadonlyArray<AssumedStopCopyLength>
  /**
   * Devices that reported new initial data during pre-copy (`VFIO_PRECOPY_INFO_REINIT`), in
   * order, with the round and the new initial bytes: each was sent and acknowledged again
   * before the switchover. Empty when none did.
   */
  readonly reinitialised: ReadonlyArray<{
    readonly device: string
    readonly round: number
    readonly initialBytes: number
  }>
  /** How many due switchovers the sizes read again at the decision instant withdrew. */
  readonly switchoversWithdrawn: number
  /**
   * Whether the destination confirmed it runs. After COMMIT the source stays stopped either way;
   * unconfirmed, the group may run nowhere: the journal records the migration as committed, and
   * an operator settles it (`lockstep journal show` / `resolve`).
   */
  readonly confirmed: boolean
}

/** The destination's summary: its group runs the migrated state. */
export interface DestinationSummary extends SummaryBase {
  readonly side: "destination"
  /** RESUMING → STOP (validation), in ms. */
  readonly validateMs: number
  /** From the commit decision to the group RUNNING, in ms. */
  readonly resumeMs: number
  /** Whether the decision came from the source's journal (the channel was lost after the vote). */
  readonly decidedFromJournal: boolean
}

/**
 * Progress of a migration, as it happens. Times are the Clock's ms (virtual under a TestClock).
 */
export type MigrationEvent =
  | { readonly _tag: "PhaseStarted"; readonly side: Side; readonly phase: Phase; readonly at: number }
  | {
      readonly _tag: "PhaseEnded"
      readonly side: Side
      readonly phase: Phase
      readonly at: number
      readonly durationMs: number
    }
  | { readonly _tag: "HandshakeDone"; readonly side: Side; readonly migration: string; readonly at: number }
  | {
      readonly _tag: "RoundDone"
      readonly round: number
      readonly bytes: number
      readonly bytesByDevice: Readonly<Record<string, number>>
      readonly durationMs: number
      readonly at: number
    }
  | {
      readonly _tag: "EstimateUpdated"
      readonly round: number
      readonly estimate: DowntimeEstimate
      readonly downtimeLimitMs: number
      readonly unacknowledged: ReadonlyArray<string>
      readonly at: number
    }
  | { readonly _tag: "InitialDataSent"; readonly device: string; readonly bytes: number; readonly at: number }
  | { readonly _tag: "InitialDataAcknowledged"; readonly side: Side; readonly device: string; readonly at: number }
  | {
      readonly _tag: "SwitchoverDecided"
      readonly reason: SwitchoverReason
      /** The reason as one sentence, with its figures. */
      readonly why: string
      readonly rounds: number
      readonly estimateMs: number | undefined
      readonly at: number
    }
  /**
   * A device reported `VFIO_PRECOPY_INFO_REINIT`: its initial data is new and due again, so its
   * switchover-ack is owed again (the destination acknowledges the new initial data).
   */
  | {
      readonly _tag: "PrecopyReinitialised"
      readonly device: string
      /** The new initial data, in bytes. */
      readonly initialBytes: number
      /** The pre-copy round in which the source saw it. */
      readonly round: number
      readonly at: number
    }
  /**
   * A round's figures say switch over: every device's sizes are read again at this instant, and
   * the switchover is then `SwitchoverDecided`, or `SwitchoverWithdrawn`.
   */
  | {
      readonly _tag: "SwitchoverDue"
      readonly reason: SwitchoverReason
      readonly round: number
      readonly estimateMs: number
      readonly at: number
    }
  /** The sizes read at the decision instant withdrew a due switchover: pre-copy goes on. */
  | {
      readonly _tag: "SwitchoverWithdrawn"
      readonly round: number
      /** Why, as one sentence with its figures. */
      readonly why: string
      /** Devices that reported REINIT when read again. */
      readonly reinitialised: ReadonlyArray<string>
      /** The estimate from the sizes read again, in ms. */
      readonly estimateMs: number
      readonly at: number
    }
  | {
      readonly _tag: "DeviceDrained"
      readonly side: Side
      readonly device: string
      readonly bytes: number
      readonly at: number
    }
  | {
      readonly _tag: "GroupTransition"
      readonly side: Side
      /** The group step: `beginPrecopy`, `enterStopCopy`, `prepareResume`, `validate`, `resume`, `rollback`, `park`. */
      readonly step: string
      readonly event: TransitionEvent
    }
  | {
      readonly _tag: "DecisionRecorded"
      readonly side: Side
      readonly migration: string
      readonly decision: "committed" | "aborted"
      readonly at: number
    }
  | { readonly _tag: "Resumed"; readonly side: Side; readonly resumeMs: number; readonly at: number }
  | {
      readonly _tag: "Recovered"
      readonly side: Side
      readonly ok: boolean
      readonly states: FinalStates
      readonly at: number
    }
  /** Something went wrong that does not change the outcome (a peer that could not be told, a journal note). */
  | { readonly _tag: "Warning"; readonly side: Side; readonly reason: string; readonly at: number }
  | { readonly _tag: "Completed"; readonly summary: SourceSummary | DestinationSummary; readonly at: number }

/** A callback told of every event, synchronously, in order. */
export type EventSink = (event: MigrationEvent) => void

/**
 * Events as an Effect `Stream`: pass `onEvent` to a session, consume `events` elsewhere, and
 * `close` when the session is done (the stream then ends). Unbounded: events are small and
 * few (per round and per arc, never per chunk).
 */
export const feed: Effect.Effect<{
  readonly onEvent: EventSink
  readonly events: Stream.Stream<MigrationEvent>
  readonly close: Effect.Effect<void>
}> = Effect.map(Queue.unbounded<MigrationEvent, Cause.Done>(), (queue) => ({
  onEvent: (event) => {
    Queue.offerUnsafe(queue, event)
  },
  events: Stream.fromQueue(queue),
  close: Effect.asVoid(Queue.end(queue))
}))
