import { OtelMetrics, OtelTracer, Resource } from "@effect/opentelemetry"
import type { ExportResult } from "@opentelemetry/core"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import {
  PeriodicExportingMetricReader,
  type PushMetricExporter,
  type ResourceMetrics
} from "@opentelemetry/sdk-metrics"
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter
} from "@opentelemetry/sdk-trace-base"
import { Context, Effect, Layer, Metric, Schema } from "effect"
import { type MigrationTrace, makeMigrationTrace, type TraceOptions } from "./MigrationTrace.js"

/** Where and how telemetry is exported. */
export interface TelemetryOptions {
  /**
   * The OTLP/HTTP endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it (`http://collector:4318`):
   * traces go to `/v1/traces`, metrics to `/v1/metrics` under it.
   */
  readonly endpoint: string
  /** The `service.name` of the resource. Default `lockstep`. */
  readonly serviceName?: string | undefined
  /**
   * Told, once, that an export failed (a sentence: what happened, what to do). An export failure
   * never fails the migration.
   */
  readonly onExportFailure: (sentence: string) => void
}

/**
 * Traces and metrics of migrations, exported over OTLP. Provided by `Telemetry.layer`; a program
 * without it records nothing and pays nothing (no observer is attached to the sessions).
 */
export class Telemetry extends Context.Service<
  Telemetry,
  {
    /** Starts the trace of one migration; feed it the sessions' events and `end` it when they are done. */
    readonly trace: (options: TraceOptions) => MigrationTrace
  }
>()("@lockstep/telemetry/Telemetry") {}

/** The endpoint is not an http(s) URL. */
export class InvalidEndpoint extends Schema.TaggedError<InvalidEndpoint>()("InvalidEndpoint", {
  endpoint: Schema.String,
  /** Where it came from: `--otlp` or `OTEL_EXPORTER_OTLP_ENDPOINT`. */
  source: Schema.String
}) {
  override get message(): string {
    return `${this.source}: "${this.endpoint}" is not an OTLP/HTTP endpoint; give the collector's base URL, e.g. http://localhost:4318 (traces go to /v1/traces, metrics to /v1/metrics)`
  }
}

/**
 * The endpoint to export to: the flag when given, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none
 * (telemetry off). `source` in the error names where a bad one came from.
 */
export const endpointOf = (
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env
): Effect.Effect<string | undefined, InvalidEndpoint> => {
  const [endpoint, source] =
    flag !== undefined ? [flag, "--otlp"] : [env.OTEL_EXPORTER_OTLP_ENDPOINT, "OTEL_EXPORTER_OTLP_ENDPOINT"]
  if (endpoint === undefined || endpoint.trim() === "") return Effect.succeed(undefined)
  const url = URL.canParse(endpoint) ? new URL(endpoint) : undefined
  return url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")
    ? Effect.fail(new InvalidEndpoint({ endpoint, source }))
    : Effect.succeed(endpoint.replace(/\/+$/, ""))
}

/**
 * What the SDK is told of an export, failed or not, once the failure is reported: a failure it
 * heard of would reject its flush at shutdown, and an export failure must never fail a migration.
 */
const told: ExportResult = { code: 0 }

/** Reports the first failed export, then stays quiet: one sentence is enough to act on. */
const failureNotice = (endpoint: string, tell: (sentence: string) => void) => {
  let told = false
  return (signal: string, result: ExportResult) => {
    if (result.code === 0 || told) return
    told = true
    const why = result.error?.message ?? "no reason given"
    tell(
      `telemetry: exporting ${signal} to ${endpoint} failed (${why}); the migration goes on without it: check that an OTLP/HTTP collector listens there, or drop --otlp (and OTEL_EXPORTER_OTLP_ENDPOINT)`
    )
  }
}

const noticingSpans = (inner: SpanExporter, notice: (signal: string, result: ExportResult) => void): SpanExporter => ({
  export: (spans: Array<ReadableSpan>, done: (result: ExportResult) => void) =>
    inner.export(spans, (result) => {
      notice("traces", result)
      done(told)
    }),
  shutdown: () => inner.shutdown(),
  forceFlush: () => inner.forceFlush?.() ?? Promise.resolve()
})

const noticingMetrics = (
  inner: PushMetricExporter,
  notice: (signal: string, result: ExportResult) => void
): PushMetricExporter => ({
  export: (metrics: ResourceMetrics, done: (result: ExportResult) => void) =>
    inner.export(metrics, (result) => {
      notice("metrics", result)
      done(told)
    }),
  forceFlush: () => inner.forceFlush(),
  shutdown: () => inner.shutdown(),
  ...(inner.selectAggregationTemporality === undefined
    ? {}
    : { selectAggregationTemporality: inner.selectAggregationTemporality.bind(inner) })
})

/** How long a request to the collector may take. */
const exportTimeoutMillis = 5_000

/**
 * Exports over OTLP/HTTP (JSON): spans through a batch processor of the OpenTelemetry SDK, and
 * Effect's metrics through `@effect/opentelemetry`. Everything pending is flushed when the layer's
 * scope closes; a failed export is told once through `onExportFailure` and never fails anything.
 */
export const layer = (options: TelemetryOptions): Layer.Layer<Telemetry> => {
  const notice = failureNotice(options.endpoint, options.onExportFailure)
  const resource = Resource.layer({ serviceName: options.serviceName ?? "lockstep", serviceVersion: "0.1.0" })
  // Each telemetry layer has a registry of its own: what it exports is what its migrations did.
  const registry = Layer.succeed(Metric.MetricRegistry, new Map())
  const metrics = OtelMetrics.layer(
    () =>
      new PeriodicExportingMetricReader({
        exporter: noticingMetrics(
          new OTLPMetricExporter({ url: `${options.endpoint}/v1/metrics`, timeoutMillis: exportTimeoutMillis }),
          notice
        ),
        exportIntervalMillis: 10_000,
        exportTimeoutMillis
      }),
    { shutdownTimeout: "10 seconds" }
  )
  const provider = Layer.effect(
    OtelTracer.OtelTracerProvider,
    Effect.gen(function* () {
      const resourceValue = yield* Resource.Resource
      const processor = new BatchSpanProcessor(
        noticingSpans(
          new OTLPTraceExporter({ url: `${options.endpoint}/v1/traces`, timeoutMillis: exportTimeoutMillis }),
          notice
        ),
        { maxQueueSize: 100_000, maxExportBatchSize: 2_048, exportTimeoutMillis }
      )
      const tracerProvider = new BasicTracerProvider({ resource: resourceValue, spanProcessors: [processor] })
      yield* Effect.addFinalizer(() =>
        Effect.tryPromise(() => tracerProvider.shutdown()).pipe(Effect.timeout("10 seconds"), Effect.ignore)
      )
      return tracerProvider
    })
  )
  const telemetry = Layer.effect(
    Telemetry,
    Effect.gen(function* () {
      const tracer = yield* OtelTracer.OtelTracer
      const context = yield* Effect.context<never>()
      return Telemetry.of({ trace: (traceOptions) => makeMigrationTrace(tracer, context, traceOptions) })
    })
  )
  const services = Layer.mergeAll(Layer.provide(OtelTracer.layerTracer, provider), metrics).pipe(
    Layer.provideMerge(Layer.mergeAll(resource, registry))
  )
  return Layer.provide(telemetry, services)
}
