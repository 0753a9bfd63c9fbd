import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

/**
 * An OTLP/HTTP collector in this process: it takes what the real exporters send (the JSON
 * protocol) and keeps every span and metric, as a collector would hand them on.
 */
interface Collector {
  readonly url: string
  readonly spans: Array<OtlpSpan>
  readonly metrics: Array<OtlpMetric>
  readonly close: () => Promise<void>
}

interface OtlpAttribute {
  readonly key: string
  readonly value: {
    readonly stringValue?: string
    readonly intValue?: string | number
    readonly doubleValue?: number
    readonly boolValue?: boolean
    readonly arrayValue?: { readonly values?: ReadonlyArray<{ readonly stringValue?: string }> }
  }
}

interface OtlpSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly startTimeUnixNano: string
  readonly endTimeUnixNano: string
  readonly attributes?: ReadonlyArray<OtlpAttribute>
  readonly status?: { readonly code?: number; readonly message?: string }
}

interface OtlpMetric {
  readonly name: string
  readonly sum?: { readonly dataPoints: ReadonlyArray<OtlpPoint> }
  readonly gauge?: { readonly dataPoints: ReadonlyArray<OtlpPoint> }
  readonly histogram?: { readonly dataPoints: ReadonlyArray<OtlpPoint & { readonly count?: string | number }> }
}

interface OtlpPoint {
  readonly attributes?: ReadonlyArray<OtlpAttribute>
  readonly asInt?: string | number
  readonly asDouble?: number
}

const startCollector = (): Promise<Collector> =>
  new Promise((resolve) => {
    const spans: Array<OtlpSpan> = []
    const metrics: Array<OtlpMetric> = []
    const server: Server = createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8"))
        if (request.url === "/v1/traces")
          for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans)
        if (request.url === "/v1/metrics")
          for (const rm of body.resourceMetrics ?? [])
            for (const sm of rm.scopeMetrics ?? []) metrics.push(...sm.metrics)
        response.writeHead(200, { "content-type": "application/json" })
        response.end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        spans,
        metrics,
        close: () => new Promise((done) => server.close(() => done()))
      })
    })
  })

const attribute = (attributes: ReadonlyArray<OtlpAttribute> | undefined, key: string): unknown => {
  const value = attributes?.find((a) => a.key === key)?.value
  if (value === undefined) return undefined
  if (value.stringValue !== undefined) return value.stringValue
  if (value.intValue !== undefined) return Number(value.intValue)
  if (value.doubleValue !== undefined) return value.doubleValue
  if (value.boolValue !== undefined) return value.boolValue
  return value.arrayValue?.values?.map((v) => v.stringValue)
}

const flags = ["STOP_COPY", "P2P", "PRE_COPY"]

/**
 * Two GPUs that write into each other and a NIC that writes into gpu0, the NIC slow to quiesce
 * (20 ms against 1 ms): by the group rule gpu0 may not halt before the NIC is quiesced, so its
 * arc into STOP_COPY waits for the NIC's PRE_COPY → PRE_COPY_P2P.
 */
const scenario = {
  devices: [
    ...["gpu0", "gpu1"].map((id) => ({
      id,
      kind: "pci",
      flags,
      sim: { stateSize: 262144, precopyInitialBytes: 131072, dirtyBytesPerSecond: 65536, arcLatencyMs: 1 }
    })),
    {
      id: "nic0",
      kind: "pci",
      flags,
      sim: {
        stateSize: 65536,
        precopyInitialBytes: 32768,
        dirtyBytesPerSecond: 16384,
        arcLatencyMs: 1,
        arcLatenciesMs: { "PRE_COPY>PRE_COPY_P2P": 20 }
      }
    }
  ],
  topology: { domains: [["gpu0", "gpu1"]], edges: [["nic0", "gpu0"]] },
  seed: 3,
  p2pWritesPerSecond: 1000,
  migration: { downtimeLimitMs: 200 }
}

const dir = mkdtempSync(join(tmpdir(), "lockstep-telemetry-"))
const file = join(dir, "scenario.json")
let collector: Collector

beforeAll(async () => {
  writeFileSync(file, JSON.stringify(scenario))
  collector = await startCollector()
})

afterAll(async () => {
  await collector.close()
  rmSync(dir, { recursive: true, force: true })
})

describe("lockstep simulate --otlp", () => {
  it("exports a trace of the migration (phases, arcs with their P2P waits) and its metrics to a collector", async () => {
    const r = await runCli("simulate", file, "--json", "--otlp", collector.url)
    expect(r.stderr).toBe("")
    expect(r.exitCode).toBe(0)
    const result = JSON.parse(r.stdout)
    expect(result).toMatchObject({ ok: true, verified: true, violations: 0 })

    const roots = collector.spans.filter((s) => s.name === "Lockstep.migration")
    expect(roots).toHaveLength(1)
    const root = roots[0]
    if (root === undefined) return
    expect(attribute(root.attributes, "lockstep.outcome")).toBe("migrated")
    const trace = collector.spans.filter((s) => s.traceId === root.traceId)
    // Virtual time shifted onto the wall clock: the trace is where the run happened, give or take a minute.
    expect(Math.abs(Number(BigInt(root.startTimeUnixNano) / 1_000_000n) - Date.now())).toBeLessThan(60_000)

    // A span per phase each side goes through, under the migration's span.
    const phases = (side: string) =>
      trace
        .filter((s) => s.name.startsWith("Lockstep.phase.") && attribute(s.attributes, "lockstep.side") === side)
        .map((s) => s.name.slice("Lockstep.phase.".length))
    expect(phases("source")).toEqual(
      expect.arrayContaining(["handshake", "prepare", "precopy", "switchover", "drain", "commit"])
    )
    expect(phases("destination")).toEqual(expect.arrayContaining(["handshake", "prepare", "validate", "resume"]))
    for (const s of trace.filter((s) => s.name.startsWith("Lockstep.phase."))) expect(s.parentSpanId).toBe(root.spanId)

    // A span per arc: each source device goes RUNNING → PRE_COPY → PRE_COPY_P2P → STOP_COPY (the
    // kernel's direct arcs with all three flags), with its device, kind and flags.
    const arcs = trace.filter((s) => s.name === "Lockstep.arc")
    for (const device of ["gpu0", "gpu1", "nic0"]) {
      const own = arcs.filter(
        (s) =>
          attribute(s.attributes, "lockstep.device") === device && attribute(s.attributes, "lockstep.side") === "source"
      )
      expect(
        own.map((s) => `${attribute(s.attributes, "lockstep.arc.from")}>${attribute(s.attributes, "lockstep.arc.to")}`)
      ).toEqual(["RUNNING>PRE_COPY", "PRE_COPY>PRE_COPY_P2P", "PRE_COPY_P2P>STOP_COPY"])
      for (const s of own) {
        expect(attribute(s.attributes, "lockstep.device.kind")).toBe("pci")
        expect(attribute(s.attributes, "lockstep.device.flags")).toEqual(flags)
      }
    }
    // gpu0 halts only after its initiator nic0 is quiesced: the arc waited for nic0's quiesce,
    // about its 20 ms less gpu0's own 1 ms quiesce.
    const gpu0Stop = arcs.find(
      (s) =>
        attribute(s.attributes, "lockstep.side") === "source" &&
        attribute(s.attributes, "lockstep.device") === "gpu0" &&
        attribute(s.attributes, "lockstep.arc.to") === "STOP_COPY"
    )
    expect(attribute(gpu0Stop?.attributes, "lockstep.p2p.waited_for")).toBe("nic0 PRE_COPY→PRE_COPY_P2P")
    expect(attribute(gpu0Stop?.attributes, "lockstep.p2p.wait_ms")).toBeGreaterThanOrEqual(19)
    // The bytes moved for the device before it halted: at least its initial pre-copy data.
    expect(attribute(gpu0Stop?.attributes, "lockstep.device.bytes")).toBeGreaterThanOrEqual(131072)

    // Metrics: bytes per device, rounds, the estimate against the limit, downtime, the outcome.
    const metric = (name: string) => collector.metrics.filter((m) => m.name === name)
    const bytes = metric("lockstep.device.bytes").flatMap((m) => m.sum?.dataPoints ?? [])
    for (const device of ["gpu0", "gpu1", "nic0"])
      expect(bytes.some((p) => attribute(p.attributes, "device") === device)).toBe(true)
    const rounds = metric("lockstep.precopy.rounds").flatMap((m) => m.sum?.dataPoints ?? [])
    expect(Number(rounds.at(-1)?.asInt ?? rounds.at(-1)?.asDouble)).toBe(result.rounds)
    const limit = metric("lockstep.downtime.limit_ms").flatMap((m) => m.gauge?.dataPoints ?? [])
    expect(Number(limit.at(-1)?.asDouble ?? limit.at(-1)?.asInt)).toBe(200)
    expect(metric("lockstep.downtime.estimate_ms").length).toBeGreaterThan(0)
    const downtime = metric("lockstep.downtime_ms").flatMap((m) => m.histogram?.dataPoints ?? [])
    expect(Number(downtime.at(-1)?.count)).toBe(1)
    const outcomes = metric("lockstep.migrations").flatMap((m) => m.sum?.dataPoints ?? [])
    expect(outcomes.map((p) => attribute(p.attributes, "outcome"))).toContain("migrated")
  })

  it("traces migrate --local too: both sides' arcs in one trace", async () => {
    const r = await runCli("migrate", "--local", file, "--json", "--otlp", collector.url)
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, violations: 0 })
    const root = collector.spans.find(
      (s) =>
        s.name === "Lockstep.migration" &&
        attribute(s.attributes, "lockstep.run") === `lockstep migrate --local ${file}`
    )
    expect(attribute(root?.attributes, "lockstep.outcome")).toBe("migrated")
    const arcs = collector.spans.filter((s) => s.traceId === root?.traceId && s.name === "Lockstep.arc")
    // The destination resumes through the quiescent state: RESUMING → STOP → RUNNING_P2P → RUNNING.
    const resumed = arcs
      .filter(
        (s) =>
          attribute(s.attributes, "lockstep.side") === "destination" &&
          attribute(s.attributes, "lockstep.device") === "gpu1"
      )
      .map((s) => `${attribute(s.attributes, "lockstep.arc.from")}>${attribute(s.attributes, "lockstep.arc.to")}`)
    expect(resumed).toEqual(expect.arrayContaining(["RESUMING>STOP", "STOP>RUNNING_P2P", "RUNNING_P2P>RUNNING"]))
  })

  it("marks a failed arc and the rollback in the trace, and counts the migration as rolled back", async () => {
    const faulty = join(dir, "faulty.json")
    // The same group, with gpu1's arc into STOP_COPY failing on the source: the group rolls back.
    writeFileSync(
      faulty,
      JSON.stringify({
        ...scenario,
        faults: { source: { gpu1: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY" }] } },
        migration: { ...scenario.migration, errorPolicy: "reset" }
      })
    )
    const r = await runCli("simulate", faulty, "--json", "--otlp", collector.url)
    expect(r.exitCode).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, violations: 0 })
    const root = collector.spans.find(
      (s) =>
        s.name === "Lockstep.migration" && attribute(s.attributes, "lockstep.run") === `lockstep simulate ${faulty}`
    )
    expect(attribute(root?.attributes, "lockstep.outcome")).toBe("rolled-back")
    const failed = collector.spans.filter(
      (s) => s.traceId === root?.traceId && s.name === "Lockstep.arc" && s.status?.code === 2
    )
    expect(
      failed.map((s) => [attribute(s.attributes, "lockstep.device"), attribute(s.attributes, "lockstep.arc.to")])
    ).toEqual([["gpu1", "STOP_COPY"]])
    const outcomes = collector.metrics
      .filter((m) => m.name === "lockstep.migrations")
      .flatMap((m) => m.sum?.dataPoints ?? [])
    expect(outcomes.map((p) => attribute(p.attributes, "outcome"))).toContain("rolled-back")
  })

  it("says once that the collector cannot be reached, and the migration still succeeds", async () => {
    const unreachable = await startCollector()
    await unreachable.close()
    const r = await runCli("simulate", file, "--json", "--otlp", unreachable.url)
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verified: true, violations: 0 })
    const lines = r.stderr.trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      new RegExp(
        `^lockstep: telemetry: exporting (traces|metrics) to ${unreachable.url} failed \\(.+\\); the migration goes on without it`
      )
    )
  })

  it("refuses an endpoint that is not an http(s) URL, before anything runs", async () => {
    const r = await runCli("simulate", file, "--otlp", "localhost:4318")
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(/^lockstep: --otlp: "localhost:4318" is not an OTLP\/HTTP endpoint; /)
  })
})
