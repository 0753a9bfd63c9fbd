import { expandAfter } from "@lockstep/coordinator"
import type { MigrationEvent, Side } from "@lockstep/migration"
import * as Otel from "@opentelemetry/api"
import { type Context, Metric } from "effect"

/** A device as the trace names it: its id, kind and migration flags. */
export interface TracedDevice {
  readonly id: string
  readonly kind: string
  readonly flags: ReadonlyArray<string>
}

/** What a migration's trace is told before its first event. */
export interface TraceOptions {
  /** The root span's `lockstep.run` attribute: the command that ran the migration. */
  readonly run: string
  /** Each side's devices, for the arcs' kind and flags attributes; a side this process does not run may be absent. */
  readonly devices: Partial<Readonly<Record<Side, ReadonlyArray<TracedDevice>>>>
}

/** How a migration ended, as the `lockstep.migrations` metric counts it. */
export type MigrationOutcome = "migrated" | "committed-unconfirmed" | "resumed" | "rolled-back" | "failed"

/**
 * One migration's trace and metrics, fed by its events: pass `onEvent` to the sessions (both, when
 * both sides run here) and call `end` once they are done.
 */
export interface MigrationTrace {
  readonly onEvent: (event: MigrationEvent) => void
  /** Ends every span still open and counts the migration's outcome. */
  readonly end: () => void
}

/** The metrics of migrations, recorded through Effect's `Metric` and exported by `Telemetry`. */
export const MigrationMetrics = {
  /** Bytes of device state sent (source) or received (destination), by `device`, `side` and `stage` (`precopy`, `stopcopy`). */
  deviceBytes: Metric.counter("lockstep.device.bytes", {
    description: "Bytes of device state moved, by device, side and stage (precopy, stopcopy)",
    incremental: true
  }),
  /** Pre-copy rounds run. */
  rounds: Metric.counter("lockstep.precopy.rounds", { description: "Pre-copy rounds run", incremental: true }),
  /** The source's latest downtime estimate, in ms. */
  estimateMs: Metric.gauge("lockstep.downtime.estimate_ms", {
    description: "The latest downtime estimate of pre-copy, in ms"
  }),
  /** The downtime limit the estimate is held against, in ms. */
  limitMs: Metric.gauge("lockstep.downtime.limit_ms", { description: "The downtime limit, in ms" }),
  /** The downtime of each migration the destination confirmed, in ms. */
  downtimeMs: Metric.histogram("lockstep.downtime_ms", {
    description: "The downtime of each confirmed migration, in ms",
    boundaries: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000]
  }),
  /** Migrations ended, by `outcome`. */
  migrations: Metric.counter("lockstep.migrations", {
    description: "Migrations ended, by outcome",
    incremental: true
  })
}

interface OpenArc {
  readonly span: Otel.Span
  readonly device: string
}

/** The arcs of the plan running on one side: who waits for whom, and when each arc ended. */
interface PlanScope {
  readonly after: ReadonlyMap<string, ReadonlyArray<string>>
  readonly ended: Map<string, { readonly device: string; readonly label: string; readonly at: number }>
  /** When each device's next arc was ready as far as the device itself goes. */
  readonly readyAt: Map<string, number>
}

const arcLabel = (device: string, from: string, to: string) => `${device} ${from}→${to}`

/**
 * Builds the trace of one migration on `tracer`, recording its metrics into `metrics` (a context
 * holding the `MetricRegistry` the exporter reads). Event times are the Clock's (virtual in a
 * simulation): spans are shifted so that the first event lands at the wall-clock instant it is
 * seen, which keeps a simulated run readable and a real one where it was.
 */
export const makeMigrationTrace = (
  tracer: Otel.Tracer,
  metrics: Context.Context<never>,
  options: TraceOptions
): MigrationTrace => {
  const kinds = new Map<string, TracedDevice>()
  for (const side of ["source", "destination"] as const)
    for (const d of options.devices[side] ?? []) kinds.set(`${side}\0${d.id}`, d)
  let offset: number | undefined
  let last = 0
  let migration: string | undefined
  let outcome: MigrationOutcome | undefined
  const wall = (at: number): number => {
    offset ??= Date.now() - at
    last = Math.max(last, at)
    return at + offset
  }
  let root: Otel.Span | undefined
  let rootContext: Otel.Context = Otel.ROOT_CONTEXT
  const rootAt = (at: number) => {
    if (root === undefined) {
      root = tracer.startSpan(
        "Lockstep.migration",
        { startTime: wall(at), attributes: { "lockstep.run": options.run } },
        Otel.ROOT_CONTEXT
      )
      rootContext = Otel.trace.setSpan(Otel.ROOT_CONTEXT, root)
    }
    return rootContext
  }
  const phases = new Map<Side, { readonly phase: string; readonly span: Otel.Span; readonly context: Otel.Context }>()
  const arcs = new Map<string, OpenArc>()
  const scopes = new Map<Side, PlanScope>()
  const bytes = new Map<string, number>()
  const parentOf = (side: Side, at: number) => phases.get(side)?.context ?? rootAt(at)
  const count = (side: Side, device: string, stage: "precopy" | "stopcopy", n: number) => {
    const key = `${side}\0${device}`
    bytes.set(key, (bytes.get(key) ?? 0) + n)
    Metric.withAttributes(MigrationMetrics.deviceBytes, { device, side, stage }).updateUnsafe(n, metrics)
  }

  const onTransition = ({ side, step, event: e }: Extract<MigrationEvent, { _tag: "GroupTransition" }>) => {
    switch (e._tag) {
      case "PlanReady": {
        const readyAt = new Map<string, number>()
        for (const device of Object.keys(e.plan.initial)) readyAt.set(device, e.at)
        scopes.set(side, { after: expandAfter(e.plan), ended: new Map(), readyAt })
        return
      }
      case "ArcStarted": {
        const device = kinds.get(`${side}\0${e.device}`)
        const scope = scopes.get(side)
        const ready = scope?.readyAt.get(e.device)
        // The dependency that released the arc is the last of its other devices' arcs to end.
        let cause: { readonly device: string; readonly label: string; readonly at: number } | undefined
        for (const id of scope?.after.get(e.id) ?? []) {
          const ended = scope?.ended.get(id)
          if (ended === undefined || ended.device === e.device || ended.at > e.at) continue
          if (cause === undefined || ended.at > cause.at) cause = ended
        }
        const attributes: Otel.Attributes = {
          "lockstep.side": side,
          "lockstep.step": step,
          "lockstep.device": e.device,
          "lockstep.arc.id": e.id,
          "lockstep.arc.from": e.arc.from,
          "lockstep.arc.to": e.arc.to,
          ...(device === undefined
            ? {}
            : { "lockstep.device.kind": device.kind, "lockstep.device.flags": [...device.flags] }),
          ...(ready === undefined ? {} : { "lockstep.p2p.wait_ms": Math.max(0, e.at - ready) }),
          ...(cause === undefined ? {} : { "lockstep.p2p.waited_for": cause.label })
        }
        const span = tracer.startSpan("Lockstep.arc", { startTime: wall(e.at), attributes }, parentOf(side, e.at))
        arcs.set(`${side}\0${e.id}`, { span, device: e.device })
        scope?.readyAt.delete(e.device)
        return
      }
      case "ArcDone":
      case "ArcFailed": {
        const key = `${side}\0${e.id}`
        const open = arcs.get(key)
        if (open === undefined) return
        arcs.delete(key)
        open.span.setAttribute("lockstep.device.bytes", bytes.get(`${side}\0${e.device}`) ?? 0)
        if (e._tag === "ArcFailed") open.span.setStatus({ code: Otel.SpanStatusCode.ERROR, message: e.error.message })
        open.span.end(wall(e.at))
        const scope = scopes.get(side)
        if (e._tag === "ArcDone" && scope !== undefined) {
          scope.ended.set(e.id, { device: e.device, label: arcLabel(e.device, e.arc.from, e.arc.to), at: e.at })
          scope.readyAt.set(e.device, e.at)
        }
        return
      }
      case "RollbackBegun":
        scopes.delete(side)
        phases.get(side)?.span.addEvent("rollback begun", { "lockstep.cause": e.cause.message }, wall(e.at))
        return
      case "RollbackDone":
        phases.get(side)?.span.addEvent("rollback done", { "lockstep.ok": e.ok }, wall(e.at))
        return
      case "DeviceReset":
      case "DeviceQuarantined":
        phases
          .get(side)
          ?.span.addEvent(
            e._tag === "DeviceReset" ? "device reset" : "device quarantined",
            { "lockstep.device": e.device },
            wall(e.at)
          )
        return
    }
  }

  const onEvent = (event: MigrationEvent): void => {
    switch (event._tag) {
      case "PhaseStarted": {
        // A side is in one phase at a time: one that never said it ended ends where the next begins.
        phases.get(event.side)?.span.end(wall(event.at))
        const span = tracer.startSpan(
          `Lockstep.phase.${event.phase}`,
          { startTime: wall(event.at), attributes: { "lockstep.side": event.side, "lockstep.phase": event.phase } },
          rootAt(event.at)
        )
        phases.set(event.side, { phase: event.phase, span, context: Otel.trace.setSpan(rootContext, span) })
        return
      }
      case "PhaseEnded": {
        const open = phases.get(event.side)
        if (open === undefined || open.phase !== event.phase) return
        phases.delete(event.side)
        open.span.end(wall(event.at))
        return
      }
      case "HandshakeDone":
        migration = event.migration
        wall(event.at)
        root?.setAttribute("lockstep.migration", event.migration)
        return
      case "GroupTransition":
        onTransition(event)
        return
      case "RoundDone": {
        const span = tracer.startSpan(
          "Lockstep.precopy.round",
          {
            startTime: wall(event.at - event.durationMs),
            attributes: { "lockstep.round": event.round, "lockstep.bytes": event.bytes }
          },
          parentOf("source", event.at)
        )
        for (const [device, n] of Object.entries(event.bytesByDevice)) {
          span.addEvent("device bytes", { "lockstep.device": device, "lockstep.bytes": n }, wall(event.at))
          count("source", device, "precopy", n)
        }
        span.end(wall(event.at))
        MigrationMetrics.rounds.updateUnsafe(1, metrics)
        return
      }
      case "EstimateUpdated":
        wall(event.at)
        MigrationMetrics.estimateMs.updateUnsafe(event.estimate.totalMs, metrics)
        MigrationMetrics.limitMs.updateUnsafe(event.downtimeLimitMs, metrics)
        phases.get("source")?.span.addEvent(
          "estimate",
          {
            "lockstep.round": event.round,
            "lockstep.downtime.estimate_ms": event.estimate.totalMs,
            "lockstep.downtime.limit_ms": event.downtimeLimitMs,
            "lockstep.unacknowledged": [...event.unacknowledged]
          },
          wall(event.at)
        )
        return
      case "SwitchoverDecided":
        rootAt(event.at)
        root?.addEvent(
          "switchover decided",
          {
            "lockstep.switchover.reason": event.reason,
            "lockstep.switchover.why": event.why,
            "lockstep.rounds": event.rounds,
            ...(event.estimateMs === undefined ? {} : { "lockstep.downtime.estimate_ms": event.estimateMs })
          },
          wall(event.at)
        )
        return
      case "DeviceDrained":
        wall(event.at)
        count(event.side, event.device, "stopcopy", event.bytes)
        return
      case "Recovered":
        wall(event.at)
        if (event.side === "source" || outcome === undefined) outcome = event.ok ? "rolled-back" : "failed"
        return
      case "Completed": {
        wall(event.at)
        const summary = event.summary
        if (summary.side === "source") {
          outcome = summary.confirmed ? "migrated" : "committed-unconfirmed"
          root?.setAttributes({
            "lockstep.rounds": summary.rounds,
            "lockstep.bytes": summary.bytes,
            "lockstep.downtime.limit_ms": summary.downtimeLimitMs,
            ...(summary.downtimeMs === undefined ? {} : { "lockstep.downtime_ms": summary.downtimeMs })
          })
          if (summary.downtimeMs !== undefined) MigrationMetrics.downtimeMs.updateUnsafe(summary.downtimeMs, metrics)
        } else if (outcome === undefined) outcome = "resumed"
        return
      }
      case "InitialDataSent":
      case "InitialDataAcknowledged":
      case "DecisionRecorded":
      case "Resumed":
        wall(event.at)
        return
      case "Warning":
        rootAt(event.at)
        root?.addEvent("warning", { "lockstep.side": event.side, "lockstep.reason": event.reason }, wall(event.at))
        return
    }
  }

  let ended = false
  const end = (): void => {
    if (ended) return
    ended = true
    const at = last + (offset ?? Date.now() - last)
    for (const open of arcs.values()) {
      open.span.setStatus({ code: Otel.SpanStatusCode.ERROR, message: "the arc had not ended when the migration did" })
      open.span.end(at)
    }
    for (const open of phases.values()) {
      open.span.setStatus({
        code: Otel.SpanStatusCode.ERROR,
        message: "the phase had not ended when the migration did"
      })
      open.span.end(at)
    }
    const result = outcome ?? "failed"
    if (root !== undefined) {
      root.setAttribute("lockstep.outcome", result)
      if (migration !== undefined) root.setAttribute("lockstep.migration", migration)
      if (result !== "migrated" && result !== "resumed")
        root.setStatus({ code: Otel.SpanStatusCode.ERROR, message: result })
      root.end(at)
    }
    Metric.withAttributes(MigrationMetrics.migrations, { outcome: result }).updateUnsafe(1, metrics)
  }

  return { onEvent, end }
}
