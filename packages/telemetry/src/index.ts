/**
 * OpenTelemetry for migrations: a trace per migration (a span per phase, per device arc and per
 * pre-copy round) and metrics (bytes per device, rounds, downtime estimate against its limit,
 * downtime, outcomes), exported over OTLP/HTTP.
 *
 * @packageDocumentation
 */
export {
  MigrationMetrics,
  type MigrationOutcome,
  type MigrationTrace,
  makeMigrationTrace,
  type TracedDevice,
  type TraceOptions
} from "./MigrationTrace.js"
export { endpointOf, InvalidEndpoint, layer, Telemetry, type TelemetryOptions } from "./Telemetry.js"
