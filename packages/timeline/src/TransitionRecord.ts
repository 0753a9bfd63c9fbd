import { States } from "@lockstep/fsm"
import { Schema } from "effect"

const State = Schema.Literals(States)
const KnownOrUnknown = Schema.Literals([...States, "UNKNOWN"])
const Arc = Schema.Struct({ from: State, to: State })
/** A failure as the timeline shows it: its sentence. */
const Failure = Schema.Struct({ message: Schema.String })
const States_ = Schema.Record(Schema.String, KnownOrUnknown)

/** What the timeline reads of a plan: its arcs and barriers with what each waits for, and the group's states before and after. */
export const RecordedPlan = Schema.Struct({
  arcs: Schema.Array(
    Schema.Struct({
      id: Schema.String,
      device: Schema.String,
      from: State,
      to: State,
      after: Schema.Array(Schema.String)
    })
  ),
  barriers: Schema.Array(Schema.Struct({ id: Schema.String, after: Schema.Array(Schema.String) })),
  initial: Schema.Record(Schema.String, State),
  target: Schema.Record(Schema.String, State)
})

/**
 * A group transition's event as the timeline reads it: the executor's `TransitionEvent` less
 * what a picture does not show (a failure is its message). Every `TransitionEvent` is one, and
 * so is one read back from a file of events.
 */
export const RecordedTransition = Schema.Union([
  Schema.Struct({ _tag: Schema.Literal("PlanReady"), plan: RecordedPlan, at: Schema.Number }),
  Schema.Struct({
    _tag: Schema.Literals(["ArcStarted", "ArcDone"]),
    id: Schema.String,
    device: Schema.String,
    arc: Arc,
    at: Schema.Number
  }),
  Schema.Struct({
    _tag: Schema.Literal("ArcFailed"),
    id: Schema.String,
    device: Schema.String,
    arc: Arc,
    at: Schema.Number,
    error: Failure
  }),
  Schema.Struct({ _tag: Schema.Literal("RollbackBegun"), cause: Failure, states: States_, at: Schema.Number }),
  Schema.Struct({
    _tag: Schema.Literal("DeviceReset"),
    device: Schema.String,
    from: KnownOrUnknown,
    at: Schema.Number
  }),
  Schema.Struct({ _tag: Schema.Literal("DeviceQuarantined"), device: Schema.String, at: Schema.Number }),
  Schema.Struct({ _tag: Schema.Literal("RollbackDone"), states: States_, ok: Schema.Boolean, at: Schema.Number })
])

/** A group transition's event as the timeline reads it. */
export type RecordedTransition = typeof RecordedTransition.Type
