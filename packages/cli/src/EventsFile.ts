import { closeSync, openSync, writeSync } from "node:fs"
import { readTextFile } from "@lockstep/coordinator"
import { type MigrationEvent, Phases } from "@lockstep/migration"
import { RecordedTransition } from "@lockstep/timeline"
import { Effect, type FileSystem, Schema } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"

const Side = Schema.Literals(["source", "destination"])
const Phase = Schema.Literals(Phases)

/**
 * A migration event as the timeline reads it. Every `MigrationEvent` is one; the events a
 * picture does not draw keep only their tag.
 */
export const RecordedEvent = Schema.Union([
  Schema.Struct({
    _tag: Schema.Literal("GroupTransition"),
    side: Side,
    step: Schema.String,
    event: RecordedTransition
  }),
  Schema.Struct({ _tag: Schema.Literal("PhaseStarted"), side: Side, phase: Phase, at: Schema.Number }),
  Schema.Struct({
    _tag: Schema.Literal("PhaseEnded"),
    side: Side,
    phase: Phase,
    at: Schema.Number,
    durationMs: Schema.Number
  }),
  Schema.Struct({
    _tag: Schema.Literal("RoundDone"),
    round: Schema.Number,
    durationMs: Schema.Number,
    at: Schema.Number
  }),
  Schema.Struct({
    _tag: Schema.Literal("SwitchoverDecided"),
    reason: Schema.Literals(["converged", "rounds", "time", "stalled", "no-precopy"]),
    at: Schema.Number
  }),
  Schema.Struct({ _tag: Schema.Literal("Resumed"), side: Side, at: Schema.Number }),
  Schema.Struct({
    _tag: Schema.Literals([
      "HandshakeDone",
      "EstimateUpdated",
      "InitialDataSent",
      "InitialDataAcknowledged",
      "DeviceDrained",
      "DecisionRecorded",
      "Recovered",
      "Warning",
      "Completed",
      "PrecopyReinitialised",
      "SwitchoverDue",
      "SwitchoverWithdrawn"
    ])
  })
])

/** A migration event as the timeline reads it. */
export type RecordedEvent = typeof RecordedEvent.Type

/** One group of a recorded migration, as its lanes are drawn: the devices in order, and who may write into whom. */
export const RecordedGroup = Schema.Struct({
  devices: Schema.Array(Schema.Struct({ id: Schema.String, kind: Schema.String })),
  p2p: Schema.Struct({
    domains: Schema.Array(Schema.Array(Schema.String)),
    edges: Schema.Array(Schema.Tuple([Schema.String, Schema.String]))
  })
})

/** One group of a recorded migration. */
export type RecordedGroup = typeof RecordedGroup.Type

/** What a group's fabric saw of the P2P invariant: its violations and corrupting writes, as the timeline draws them. */
export const ObservedEntry = Schema.Union([
  Schema.Struct({
    _tag: Schema.Literal("Violation"),
    initiator: Schema.String,
    target: Schema.String,
    from: Schema.Number,
    to: Schema.optional(Schema.Number),
    description: Schema.String
  }),
  Schema.Struct({
    _tag: Schema.Literal("CorruptingWrites"),
    initiator: Schema.String,
    target: Schema.String,
    from: Schema.Number,
    to: Schema.Number,
    writes: Schema.Number
  })
])

/** A violation or corrupting writes a fabric saw. */
export type ObservedEntry = typeof ObservedEntry.Type

/** What each side's fabric saw; a side without a fabric (kernel devices) is absent. */
export interface Observed {
  readonly source?: ReadonlyArray<ObservedEntry> | undefined
  readonly destination?: ReadonlyArray<ObservedEntry> | undefined
}

/** The first line of an events file: what was run, and the groups. */
export const RunHeader = Schema.Struct({
  _tag: Schema.Literal("Run"),
  format: Schema.Literal(1),
  title: Schema.String,
  source: RecordedGroup,
  destination: RecordedGroup
})

/** The last line: what the fabrics saw, once both sides ended. */
export const RunEnded = Schema.Struct({
  _tag: Schema.Literal("RunEnded"),
  observed: Schema.Struct({
    source: Schema.optional(Schema.Array(ObservedEntry)),
    destination: Schema.optional(Schema.Array(ObservedEntry))
  })
})

/** A failure as a line holds it: its tag and its sentence. */
const failureJson = (error: { readonly _tag: string; readonly message: string }) => ({
  _tag: error._tag,
  message: error.message
})

/** The event as one JSON object: errors (class instances) become their tag and message. */
const eventJson = (event: MigrationEvent): unknown => {
  if (event._tag !== "GroupTransition") return event
  const e = event.event
  switch (e._tag) {
    case "ArcFailed":
      return { ...event, event: { ...e, error: failureJson(e.error) } }
    case "RollbackBegun":
      return { ...event, event: { ...e, cause: failureJson(e.cause) } }
    default:
      return event
  }
}

/** Writes a migration's events to a file as they happen, one JSON object a line. */
export interface EventLog {
  readonly onEvent: (event: MigrationEvent) => void
  /** Writes the closing line and closes the file; fails if a line could not be written. */
  readonly close: (observed: Observed) => Effect.Effect<void, CliFailure>
}

const writeFailed = (file: string, cause: unknown) =>
  invalidInput(
    `--events: cannot write ${file}: ${cause instanceof Error ? cause.message : String(cause)}; name a file in a directory you can write to`
  )

/**
 * Opens `file` for the events of one migration and writes its header. Each event is written as
 * it comes (a run that stops midway leaves the events so far, with no closing line).
 */
export const openEventLog = (
  file: string,
  header: Omit<typeof RunHeader.Type, "_tag" | "format">
): Effect.Effect<EventLog, CliFailure> =>
  Effect.try({
    try: () => {
      const fd = openSync(file, "w")
      writeSync(fd, `${JSON.stringify({ _tag: "Run", format: 1, ...header })}\n`)
      return fd
    },
    catch: (cause) => writeFailed(file, cause)
  }).pipe(
    Effect.map((fd): EventLog => {
      let failure: unknown
      let open = true
      const write = (value: unknown) => {
        if (!open || failure !== undefined) return
        try {
          writeSync(fd, `${JSON.stringify(value)}\n`)
        } catch (cause) {
          failure = cause
        }
      }
      return {
        onEvent: (event) => write(eventJson(event)),
        close: (observed) =>
          Effect.suspend(() => {
            write({ _tag: "RunEnded", observed })
            if (open) {
              open = false
              closeSync(fd)
            }
            return failure === undefined ? Effect.void : Effect.fail(writeFailed(file, failure))
          })
      }
    })
  )

/** A migration read back from its events file. */
export interface RecordedRun {
  readonly header: typeof RunHeader.Type
  readonly events: ReadonlyArray<RecordedEvent>
  /** What the fabrics saw; absent when the file has no closing line (the run stopped midway). */
  readonly observed: Observed | undefined
}

/** A line of an events file is not what it must be. */
export class EventsFileInvalid extends Schema.TaggedError<EventsFileInvalid>()("EventsFileInvalid", {
  file: Schema.String,
  /** The line's number, from 1 (0: the file could not be read at all). */
  line: Schema.Number,
  /** What is wrong with it. */
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.file}, line ${this.line}: ${this.reason}; give a file written by --events (lockstep simulate, demo or migrate --local)`
  }
}

const decodeHeader = Schema.decodeUnknownEffect(Schema.fromJsonString(RunHeader))
const decodeEvent = Schema.decodeUnknownEffect(Schema.fromJsonString(RecordedEvent))
const decodeEnded = Schema.decodeUnknownEffect(Schema.fromJsonString(RunEnded))
const tagOf = (line: string): unknown => /^\s*\{\s*"_tag"\s*:\s*"([^"]*)"/.exec(line)?.[1]

/** Decodes line `line` of `file`, or names it with what is wrong, on one line. */
const decodeLine = <A>(
  decode: (text: string) => Effect.Effect<A, Schema.SchemaError>,
  file: string,
  line: number,
  text: string,
  what: string
): Effect.Effect<A, EventsFileInvalid> =>
  Effect.mapError(
    decode(text),
    (e) => new EventsFileInvalid({ file, line, reason: `${what} (${e.message.replace(/\s*\n\s*/g, " ")})` })
  )

/**
 * Reads an events file: the `Run` header, the events, and the closing `RunEnded` line when
 * there is one. Every line is decoded with its Schema; the first bad one is an
 * `EventsFileInvalid` naming its number and what is wrong with it.
 */
export const readEventsFile = (file: string): Effect.Effect<RecordedRun, EventsFileInvalid, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const text = yield* readTextFile(file).pipe(
      Effect.mapError(
        (error) =>
          new EventsFileInvalid({
            file,
            line: 0,
            reason: `cannot be read (${error.reason._tag === "JsonFileUnreadable" ? error.reason.detail : error.message})`
          })
      )
    )
    const lines = text.split("\n")
    if (lines.at(-1) === "") lines.pop()
    const first = lines[0]
    if (first === undefined) return yield* new EventsFileInvalid({ file, line: 1, reason: "the file is empty" })
    const header = yield* decodeLine(decodeHeader, file, 1, first, "not the Run header an events file begins with")
    const events: Array<RecordedEvent> = []
    let observed: Observed | undefined
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] ?? ""
      if (observed !== undefined)
        return yield* new EventsFileInvalid({ file, line: i + 1, reason: "a line after the closing RunEnded line" })
      if (tagOf(line) === "RunEnded") {
        observed = (yield* decodeLine(decodeEnded, file, i + 1, line, "a bad closing RunEnded line")).observed
        continue
      }
      events.push(yield* decodeLine(decodeEvent, file, i + 1, line, "not a migration event"))
    }
    return { header, events, observed }
  })
