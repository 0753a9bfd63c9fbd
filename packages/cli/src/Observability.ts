import type { Group } from "@lockstep/coordinator"
import { flagNames } from "@lockstep/fsm"
import type { EventSink } from "@lockstep/migration"
import { endpointOf, Telemetry, type TracedDevice, layer as telemetryLayer } from "@lockstep/telemetry"
import { Console, Effect, Option } from "effect"
import { Flag } from "effect/cli"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/** The `--events FILE` flag of the commands that run both sides of a migration here. */
export const eventsFlag = Flag.String("events").pipe(
  Flag.withMetavar("FILE.jsonl"),
  Flag.withDescription(
    "Write the migration's events to FILE as they happen, one JSON object a line (a Run header, every event of both sides, a closing RunEnded line with the P2P violations seen): the events the timeline is drawn from, so that lockstep timeline FILE OUT.svg draws it afterwards"
  ),
  Flag.optional
)

/** The `--otlp URL` flag of the commands that run a migration. */
export const otlpFlag = Flag.String("otlp").pipe(
  Flag.withMetavar("URL"),
  Flag.withDescription(
    "Export the migration's trace (a span per phase, device arc and pre-copy round) and metrics (bytes per device, rounds, downtime estimate and limit, downtime, outcome) over OTLP/HTTP to the collector at URL (e.g. http://localhost:4318); default: OTEL_EXPORTER_OTLP_ENDPOINT, else off. A failed export is reported once and never fails the migration"
  ),
  Flag.optional
)

/**
 * Runs `use` with the telemetry the flag (or `OTEL_EXPORTER_OTLP_ENDPOINT`) asks for, or with
 * none: off by default. What is pending is exported when `use` ends; an export that fails is
 * told once on stderr.
 */
export const withTelemetry = <A, E, R>(
  otlp: Option.Option<string>,
  use: (telemetry: Telemetry["Service"] | undefined) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | CliFailure, R> =>
  Effect.gen(function* () {
    const endpoint = yield* endpointOf(Option.getOrUndefined(otlp)).pipe(
      Effect.mapError((e) => invalidInput(e.message))
    )
    if (endpoint === undefined) return yield* use(undefined)
    const console = yield* Console.Console
    return yield* Effect.gen(function* () {
      return yield* use(yield* Telemetry)
    }).pipe(
      Effect.provide(
        telemetryLayer({ endpoint, onExportFailure: (sentence) => console.error(`lockstep: ${sentence}`) })
      )
    )
  })

/** A group's devices as a trace names them. */
export const tracedDevices = (group: Group): ReadonlyArray<TracedDevice> =>
  group.devices.map((d) => ({ id: d.id, kind: d.kind, flags: flagNames(d.flags) }))

/** One sink telling every given sink of each event; `undefined` when none is given (nothing observes). */
export const allSinks = (...sinks: ReadonlyArray<EventSink | undefined>): EventSink | undefined => {
  const given = sinks.filter((s) => s !== undefined)
  if (given.length <= 1) return given[0]
  return (event) => {
    for (const sink of given) sink(event)
  }
}
