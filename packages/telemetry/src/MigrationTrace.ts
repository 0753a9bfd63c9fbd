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

type TransitionEventOf<T extends string> = Extract<
  Extract<MigrationEvent, { _tag: "GroupTransition" }>["event"],
  { readonly _tag: T }
>
type EventOf<T extends MigrationEvent["_tag"]> = Extract<MigrationEvent, { readonly _tag: T }>

/**
 * The state of one migration's trace: the spans open (root, a phase per side, arcs), each side's
 * plan, the bytes each device moved, and the offset from event time to wall-clock time.
 */
class TraceState {
  private readonly kinds = new Map<string, TracedDevice>()
  private offset: number | undefined
  private last = 0
  private migration: string | undefined
  private outcome: MigrationOutcome | undefined
  private root: Otel.Span | undefined
  private rootContext: Otel.Context = Otel.ROOT_CONTEXT
  private readonly phases = new Map<
    Side,
    { readonly phase: string; readonly span: Otel.Span; readonly context: Otel.Context }
  >()
  private readonly arcs = new Map<string, OpenArc>()
  private readonly scopes = new Map<Side, PlanScope>()
  private readonly bytes = new Map<string, number>()
  private ended = false

  constructor(
    private readonly tracer: Otel.Tracer,
    private readonly metrics: Context.Context<never>,
    private readonly options: TraceOptions
  ) {
    for (const side of ["source", "destination"] as const)
      for (const d of options.devices[side] ?? []) this.kinds.set(`${side}\0${d.id}`, d)
  }

  /** An event time as a wall-clock time (the first event seen fixes the offset). */
  private wall(at: number): number {
    this.offset ??= Date.now() - at
    this.last = Math.max(this.last, at)
    return at + this.offset
  }

  /** The root span's context, the root started at `at` if it is not yet. */
  private rootAt(at: number): Otel.Context {
    if (this.root === undefined) {
      this.root = this.tracer.startSpan(
        "Lockstep.migration",
        { startTime: this.wall(at), attributes: { "lockstep.run": this.options.run } },
        Otel.ROOT_CONTEXT
      )
      this.rootContext = Otel.trace.setSpan(Otel.ROOT_CONTEXT, this.root)
    }
    return this.rootContext
  }

  private parentOf(side: Side, at: number): Otel.Context {
    return this.phases.get(side)?.context ?? this.rootAt(at)
  }

  private count(side: Side, device: string, stage: "precopy" | "stopcopy", n: number): void {
    const key = `${side}\0${device}`
    this.bytes.set(key, (this.bytes.get(key) ?? 0) + n)
    Metric.withAttributes(MigrationMetrics.deviceBytes, { device, side, stage }).updateUnsafe(n, this.metrics)
  }

  private onTransition({ side, step, event: e }: EventOf<"GroupTransition">): void {
    switch (e._tag) {
      case "PlanReady": {
        const readyAt = new Map<string, number>()
        for (const device of Object.keys(e.plan.initial)) readyAt.set(device, e.at)
        this.scopes.set(side, { after: expandAfter(e.plan), ended: new Map(), readyAt })
        return
      }
      case "ArcStarted":
        this.arcStarted(side, step, e)
        return
      case "ArcDone":
      case "ArcFailed":
        this.arcEnded(side, e)
        return
      case "RollbackBegun":
        this.scopes.delete(side)
        this.phases.get(side)?.span.addEvent("rollback begun", { "lockstep.cause": e.cause.message }, this.wall(e.at))
        return
      case "RollbackDone":
        this.phases.get(side)?.span.addEvent("rollback done", { "lockstep.ok": e.ok }, this.wall(e.at))
        return
      case "DeviceReset":
      case "DeviceQuarantined":
        this.phases
          .get(side)
          ?.span.addEvent(
            e._tag === "DeviceReset" ? "device reset" : "device quarantined",
            { "lockstep.device": e.device },
            this.wall(e.at)
          )
        return
    }
  }

  /** An arc's span, with the P2P wait before it and the dependency that released it. */
  private arcStarted(side: Side, step: string, e: TransitionEventOf<"ArcStarted">): void {
    const device = this.kinds.get(`${side}\0${e.device}`)
    const scope = this.scopes.get(side)
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
    const span = this.tracer.startSpan(
      "Lockstep.arc",
      { startTime: this.wall(e.at), attributes },
      this.parentOf(side, e.at)
    )
    this.arcs.set(`${side}\0${e.id}`, { span, device: e.device })
    scope?.readyAt.delete(e.device)
  }

  private arcEnded(side: Side, e: TransitionEventOf<"ArcDone" | "ArcFailed">): void {
    const key = `${side}\0${e.id}`
    const open = this.arcs.get(key)
    if (open === undefined) return
    this.arcs.delete(key)
    open.span.setAttribute("lockstep.device.bytes", this.bytes.get(`${side}\0${e.device}`) ?? 0)
    if (e._tag === "ArcFailed") open.span.setStatus({ code: Otel.SpanStatusCode.ERROR, message: e.error.message })
    open.span.end(this.wall(e.at))
    const scope = this.scopes.get(side)
    if (e._tag === "ArcDone" && scope !== undefined) {
      scope.ended.set(e.id, { device: e.device, label: arcLabel(e.device, e.arc.from, e.arc.to), at: e.at })
      scope.readyAt.set(e.device, e.at)
    }
  }

  onEvent(event: MigrationEvent): void {
    switch (event._tag) {
      case "PhaseStarted":
        this.phaseStarted(event)
        return
      case "PhaseEnded": {
        const open = this.phases.get(event.side)
        if (open === undefined || open.phase !== event.phase) return
        this.phases.delete(event.side)
        open.span.end(this.wall(event.at))
        return
      }
      case "HandshakeDone":
        this.migration = event.migration
        this.wall(event.at)
        this.root?.setAttribute("lockstep.migration", event.migration)
        return
      case "GroupTransition":
        this.onTransition(event)
        return
      case "RoundDone":
        this.roundDone(event)
        return
      case "EstimateUpdated":
        this.estimateUpdated(event)
        return
      case "SwitchoverDecided":
        this.switchoverDecided(event)
        return
      case "DeviceDrained":
        this.wall(event.at)
        this.count(event.side, event.device, "stopcopy", event.bytes)
        return
      case "Recovered":
        this.wall(event.at)
        if (event.side === "source" || this.outcome === undefined) this.outcome = event.ok ? "rolled-back" : "failed"
        return
      case "Completed":
        this.completed(event)
        return
      case "InitialDataSent":
      case "InitialDataAcknowledged":
      case "DecisionRecorded":
      case "Resumed":
        this.wall(event.at)
        return
      case "Warning":
        this.rootAt(event.at)
        this.root?.addEvent(
          "warning",
          { "lockstep.side": event.side, "lockstep.reason": event.reason },
          this.wall(event.at)
        )
        return
    }
  }

  private phaseStarted(event: EventOf<"PhaseStarted">): void {
    // A side is in one phase at a time: one that never said it ended ends where the next begins.
    this.phases.get(event.side)?.span.end(this.wall(event.at))
    const span = this.tracer.startSpan(
      `Lockstep.phase.${event.phase}`,
      { startTime: this.wall(event.at), attributes: { "lockstep.side": event.side, "lockstep.phase": event.phase } },
      this.rootAt(event.at)
    )
    this.phases.set(event.side, { phase: event.phase, span, context: Otel.trace.setSpan(this.rootContext, span) })
  }

  private roundDone(event: EventOf<"RoundDone">): void {
    const span = this.tracer.startSpan(
      "Lockstep.precopy.round",
      {
        startTime: this.wall(event.at - event.durationMs),
        attributes: { "lockstep.round": event.round, "lockstep.bytes": event.bytes }
      },
      this.parentOf("source", event.at)
    )
    for (const [device, n] of Object.entries(event.bytesByDevice)) {
      span.addEvent("device bytes", { "lockstep.device": device, "lockstep.bytes": n }, this.wall(event.at))
      this.count("source", device, "precopy", n)
    }
    span.end(this.wall(event.at))
    MigrationMetrics.rounds.updateUnsafe(1, this.metrics)
  }

  private estimateUpdated(event: EventOf<"EstimateUpdated">): void {
    this.wall(event.at)
    MigrationMetrics.estimateMs.updateUnsafe(event.estimate.totalMs, this.metrics)
    MigrationMetrics.limitMs.updateUnsafe(event.downtimeLimitMs, this.metrics)
    this.phases.get("source")?.span.addEvent(
      "estimate",
      {
        "lockstep.round": event.round,
        "lockstep.downtime.estimate_ms": event.estimate.totalMs,
        "lockstep.downtime.limit_ms": event.downtimeLimitMs,
        "lockstep.unacknowledged": [...event.unacknowledged]
      },
      this.wall(event.at)
    )
  }

  private switchoverDecided(event: EventOf<"SwitchoverDecided">): void {
    this.rootAt(event.at)
    this.root?.addEvent(
      "switchover decided",
      {
        "lockstep.switchover.reason": event.reason,
        "lockstep.switchover.why": event.why,
        "lockstep.rounds": event.rounds,
        ...(event.estimateMs === undefined ? {} : { "lockstep.downtime.estimate_ms": event.estimateMs })
      },
      this.wall(event.at)
    )
  }

  private completed(event: EventOf<"Completed">): void {
    this.wall(event.at)
    const summary = event.summary
    if (summary.side === "source") {
      this.outcome = summary.confirmed ? "migrated" : "committed-unconfirmed"
      this.root?.setAttributes({
        "lockstep.rounds": summary.rounds,
        "lockstep.bytes": summary.bytes,
        "lockstep.downtime.limit_ms": summary.downtimeLimitMs,
        ...(summary.downtimeMs === undefined ? {} : { "lockstep.downtime_ms": summary.downtimeMs })
      })
      if (summary.downtimeMs !== undefined) MigrationMetrics.downtimeMs.updateUnsafe(summary.downtimeMs, this.metrics)
    } else if (this.outcome === undefined) this.outcome = "resumed"
  }

  /** Ends every span still open (as errors) and the root, and counts the outcome; only the first call does. */
  end(): void {
    if (this.ended) return
    this.ended = true
    const at = this.last + (this.offset ?? Date.now() - this.last)
    for (const open of this.arcs.values()) {
      open.span.setStatus({ code: Otel.SpanStatusCode.ERROR, message: "the arc had not ended when the migration did" })
      open.span.end(at)
    }
    for (const open of this.phases.values()) {
      open.span.setStatus({
        code: Otel.SpanStatusCode.ERROR,
        message: "the phase had not ended when the migration did"
      })
      open.span.end(at)
    }
    const result = this.outcome ?? "failed"
    if (this.root !== undefined) {
      this.root.setAttribute("lockstep.outcome", result)
      if (this.migration !== undefined) this.root.setAttribute("lockstep.migration", this.migration)
      if (result !== "migrated" && result !== "resumed")
        this.root.setStatus({ code: Otel.SpanStatusCode.ERROR, message: result })
      this.root.end(at)
    }
    Metric.withAttributes(MigrationMetrics.migrations, { outcome: result }).updateUnsafe(1, this.metrics)
  }
}

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
  const state = new TraceState(tracer, metrics, options)
  return { onEvent: (event) => state.onEvent(event), end: () => state.end() }
}
