import type { FinalStates, TransitionEvent } from "@lockstep/coordinator"
import { type Cause, Effect, Queue, Stream } from "effect"
import type { AssumedStopCopyLength, DowntimeEstimate } from "./Estimate.js"
import type { Phase, Side } from "./Phase.js"

/**
 * Why pre-copy ended:
 * - `converged`: the downtime estimate is under the limit and every device's initial data is acknowledged;
 * - `rounds` / `time`: the round or time limit was reached (policy `switch`);
 * - `stalled`: nothing is left to pre-copy and the estimate is still over the limit (policy `switch`);
 * - `no-precopy`: pre-copy is off, or no device supports it.
 */
export type SwitchoverReason = "converged" | "rounds" | "time" | "stalled" | "no-precopy"

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
  /** The estimate that decided the switchover. */
  readonly estimate: DowntimeEstimate | undefined
  /**
   * From the first switchover arc to the destination group RUNNING: measured here up to the
   * decision, plus one channel latency, plus the resume time the destination reports. When the
   * confirmation never came, the destination's part is estimated.
   */
  readonly downtimeMs: number
  /** The critical path of the switchover arcs actually run (the floor the arcs alone impose). */
  readonly switchoverCriticalPathMs: number
  /**
   * Devices whose STOP_COPY length the estimates had to assume (they cannot report it: a
   * vfio-user server without MIG_DATA_SIZE), and what was assumed. Empty when every device told.
   */
  readonly assumedStopCopyLengths: ReadonlyArray<AssumedStopCopyLength>
  /** Whether the destination confirmed it runs. After COMMIT the source stays stopped either way. */
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
      readonly rounds: number
      readonly estimateMs: number | undefined
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
