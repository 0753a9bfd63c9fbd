import { describe, expect, it } from "@effect/vitest"
import { endpointOf } from "@lockstep/telemetry"
import { Effect, Result } from "effect"

const resolve = (flag: string | undefined, env: Record<string, string | undefined>) =>
  Effect.runSync(Effect.result(endpointOf(flag, env)))

describe("endpointOf", () => {
  it("is off unless asked: no flag and no OTEL_EXPORTER_OTLP_ENDPOINT", () => {
    expect(resolve(undefined, {})).toEqual(Result.succeed(undefined))
    expect(resolve(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "" })).toEqual(Result.succeed(undefined))
  })

  it("takes the usual OTEL_EXPORTER_OTLP_ENDPOINT when the flag is absent, and the flag over it", () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }
    // The base URL: the signal paths (/v1/traces, /v1/metrics) go under it, so a trailing slash is dropped.
    expect(resolve(undefined, env)).toEqual(Result.succeed("http://collector:4318"))
    expect(resolve("https://other:4318", env)).toEqual(Result.succeed("https://other:4318"))
  })

  it("refuses what is not an http(s) URL, naming where it came from", () => {
    const flag = resolve("localhost:4318", {})
    expect(Result.isFailure(flag) && flag.failure.message).toMatch(
      /^--otlp: "localhost:4318" is not an OTLP\/HTTP endpoint/
    )
    const env = resolve(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "grpc://collector:4317" })
    expect(Result.isFailure(env) && env.failure.message).toMatch(
      /^OTEL_EXPORTER_OTLP_ENDPOINT: "grpc:\/\/collector:4317"/
    )
  })
})
