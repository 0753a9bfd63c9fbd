import {
  beginPrecopy,
  enterStopCopy,
  enterStopCopyPlan,
  executePlanned,
  type Group,
  type Plan,
  type PlanArc,
  type PlanError,
  prepareResume,
  resume,
  resumePlan,
  type TransitionEvent,
  type TransitionFailed,
  type TransitionRefused,
  transition
} from "@lockstep/coordinator"
import type { DeviceError } from "@lockstep/device"
import type { State } from "@lockstep/fsm"
import {
  type ArcKey,
  arcLatency,
  runOnVirtualTime,
  type SimDevice,
  type SimDeviceConfig,
  type SimulatedGroup,
  SimulationClock,
  simulateGroup
} from "@lockstep/sim"
import { Clock, Effect, Result } from "effect"
import { atMost, contextRow, type Figure, goalRow, type Row } from "./Figure.js"
import { acceleratorGroup } from "./Groups.js"
import { makeVirtualChannel, type VirtualChannel } from "./VirtualChannel.js"

/** Settings of figure 1. */
export interface DowntimeOptions {
  readonly sizes: ReadonlyArray<number>
  /** Device state left for STOP_COPY after pre-copy converged, in bytes. */
  readonly gpuRemainingBytes: number
  readonly nicRemainingBytes: number
  /** Bandwidth of the migration channel, in bytes per second. */
  readonly channelBytesPerSecond: number
}

type Latencies = { readonly [arc in ArcKey]?: number }

/**
 * Arc latencies in ms, per device kind: the VFIO drivers' SET_STATE times on the order of
 * those reported for data-centre GPUs and mlx5 NICs. Quiescing (into a P2P state) waits for
 * outstanding DMA; the STOP_COPY arc of a PRE_COPY_P2P device stops the engines and captures
 * what is left; RESUMING → STOP loads and validates.
 */
const gpuLatencies: Latencies = {
  "RUNNING>PRE_COPY": 1,
  "RUNNING>RUNNING_P2P": 2,
  "RUNNING_P2P>STOP": 5,
  "STOP>STOP_COPY": 3,
  "PRE_COPY>PRE_COPY_P2P": 2,
  "PRE_COPY_P2P>STOP_COPY": 8,
  "STOP_COPY>STOP": 1,
  "STOP>RESUMING": 1,
  "RESUMING>STOP": 6,
  "STOP>RUNNING_P2P": 3,
  "RUNNING_P2P>RUNNING": 2
}

const nicLatencies: Latencies = {
  ...gpuLatencies,
  "PRE_COPY>PRE_COPY_P2P": 1,
  "PRE_COPY_P2P>STOP_COPY": 4,
  "RESUMING>STOP": 3,
  "STOP>RUNNING_P2P": 2,
  "RUNNING_P2P>RUNNING": 1
}

/**
 * A device whose pre-copy has converged: `stateSize` is what is left for STOP_COPY, none of it
 * pre-copied (`precopyInitialBytes` 0) and no dirtying, so the bytes to drain are known exactly.
 */
const simOf = (latencies: Latencies, remainingBytes: number): SimDeviceConfig => ({
  arcLatencyMs: 1,
  arcLatenciesMs: latencies,
  stateSize: remainingBytes,
  precopyInitialBytes: 0,
  dirtyBytesPerSecond: 0,
  pageSize: 64 * 1024
})

/** Reads per drain step: one chunk on the channel at a time. */
const drainChunkBytes = 1024 * 1024

/**
 * Longest chain of the plan's dependency graph, each arc weighing its device's latency and
 * barriers nothing: the fastest any schedule obeying the plan's dependencies can run it.
 */
export const criticalPathMs = (plan: Plan, latencyOf: (arc: PlanArc) => number): number => {
  const nodes = new Map<string, { readonly after: ReadonlyArray<string>; readonly ms: number }>([
    ...plan.arcs.map((a) => [a.id, { after: a.after, ms: latencyOf(a) }] as const),
    ...plan.barriers.map((b) => [b.id, { after: b.after, ms: 0 }] as const)
  ])
  const finish = new Map<string, number>()
  const finishOf = (id: string): number => {
    const known = finish.get(id)
    if (known !== undefined) return known
    const node = nodes.get(id)
    if (node === undefined) return 0
    const at = Math.max(0, ...node.after.map(finishOf)) + node.ms
    finish.set(id, at)
    return at
  }
  return Math.max(0, ...plan.arcs.map((a) => finishOf(a.id)))
}

/** The plan with every arc chained after the previous one in id order (a topological order): QEMU's serial walk. */
const serialized = (plan: Plan): Plan => ({
  ...plan,
  barriers: [],
  arcs: plan.arcs.map((arc, i) => {
    const previous = plan.arcs[i - 1]
    return { ...arc, after: previous === undefined ? [] : [previous.id], level: i + 1 }
  })
})

type Planner = (group: Group, from: Readonly<Record<string, State>>) => Result.Result<Plan, PlanError>
const serialPlanner =
  (planner: Planner): Planner =>
  (group, from) =>
    Result.map(planner(group, from), serialized)

type Schedule = "lockstep" | "serial"

interface Outcome {
  readonly downtimeMs: number
  /** What the source devices announced for STOP_COPY at the switchover (`stopCopyLength`). */
  readonly remainingBytes: number
  readonly drainedBytes: number
  readonly violations: number
}

/** Moves each source device's STOP_COPY data through the channel into its destination device. */
const drain = (
  source: SimulatedGroup,
  destination: SimulatedGroup,
  channel: VirtualChannel,
  concurrency: number | "unbounded"
): Effect.Effect<number, DeviceError> =>
  Effect.map(
    Effect.forEach(
      [...source.devices.values()],
      (from) =>
        Effect.gen(function* () {
          const to = destination.devices.get(from.id)
          if (to === undefined) return yield* Effect.die(new Error(`no destination device ${from.id}`))
          let moved = 0
          for (;;) {
            const read = yield* from.read(drainChunkBytes)
            if (read._tag !== "Chunk") return moved
            yield* channel.send(read.data.length)
            yield* to.write(read.data)
            moved += read.data.length
          }
        }),
      { concurrency }
    ),
    (moved) => moved.reduce((a, b) => a + b, 0)
  )

/**
 * One switchover, timed on the virtual clock from the first switchover arc to the last
 * destination device RUNNING: source → STOP_COPY, drain, destination → RUNNING. `lockstep`
 * runs the coordinator's plans and drains every device at once; `serial` runs the same plans
 * chained arc after arc, and drains device after device.
 */
const switchover = (
  schedule: Schedule,
  source: SimulatedGroup,
  destination: SimulatedGroup,
  channel: VirtualChannel
): Effect.Effect<Outcome, TransitionRefused | TransitionFailed | DeviceError> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const fabrics = [source.fabric, destination.fabric]
    // The fabrics log every violation since they were built; this run's are those it adds.
    const violationsSoFar = () => fabrics.reduce((n, f) => n + f.violations().length + f.corruptingWrites().length, 0)
    const before = violationsSoFar()
    // Untimed preparation: the source in pre-copy, the destination ready to resume.
    yield* transition(source, "RUNNING")
    yield* beginPrecopy(source)
    yield* prepareResume(destination)
    const remaining = yield* Effect.forEach([...source.devices.values()], (d) => d.stopCopyLength)
    let first: number | undefined
    const onEvent = (event: TransitionEvent) => {
      if (event._tag === "ArcStarted") first ??= event.at
    }
    const drainedBytes =
      schedule === "lockstep"
        ? yield* enterStopCopy(source, { onEvent }).pipe(
            Effect.andThen(drain(source, destination, channel, "unbounded")),
            Effect.tap(resume(destination))
          )
        : yield* executePlanned(source, serialPlanner(enterStopCopyPlan), { onEvent }).pipe(
            Effect.andThen(drain(source, destination, channel, 1)),
            Effect.tap(executePlanned(destination, serialPlanner(resumePlan)))
          )
    const end = clock.currentTimeMillisUnsafe()
    yield* Effect.forEach(fabrics, (f) => f.settle)
    const violations = violationsSoFar() - before
    const remainingBytes = remaining.reduce((a, b) => a + b, 0)
    return { downtimeMs: end - (first ?? end), remainingBytes, drainedBytes, violations }
  })

/** The latency the simulation gives a plan arc. */
const latencyIn =
  (sim: SimulatedGroup) =>
  (arc: PlanArc): number => {
    const device: SimDevice | undefined = sim.devices.get(arc.device)
    return device === undefined ? 0 : arcLatency(device.config, arc)
  }

const planned = (plan: Result.Result<Plan, PlanError>): Plan => {
  if (Result.isFailure(plan)) throw new Error(`planning failed: ${plan.failure.message}`)
  return plan.success
}

interface SizeResult {
  readonly size: number
  readonly lowerBoundMs: number
  readonly lockstep: Outcome
  readonly serial: Outcome
  readonly bytes: number
  readonly downMs: number
  readonly drainMs: number
  readonly upMs: number
}

const measureSize = (size: number, options: DowntimeOptions): Effect.Effect<SizeResult> =>
  Effect.gen(function* () {
    const group = yield* acceleratorGroup(size, {
      gpu: simOf(gpuLatencies, options.gpuRemainingBytes),
      nic: simOf(nicLatencies, options.nicRemainingBytes)
    })
    const source = yield* Effect.orDie(simulateGroup(group, { seed: 1 }))
    const destination = yield* Effect.orDie(simulateGroup(group, { seed: 2 }))
    const channel = yield* makeVirtualChannel(options.channelBytesPerSecond)

    // The lower bound, from the same parameters: the switchover plan's critical path, the
    // channel time of every remaining byte (as the devices announce it), the resume plan's.
    const downMs = criticalPathMs(planned(enterStopCopyPlan(group, "PRE_COPY")), latencyIn(source))
    const upMs = criticalPathMs(planned(resumePlan(group)), latencyIn(destination))
    // A benchmark that cannot run its transitions is broken: that is a defect, not a figure.
    const lockstep = yield* Effect.orDie(runOnVirtualTime(switchover("lockstep", source, destination, channel)))
    const serial = yield* Effect.orDie(runOnVirtualTime(switchover("serial", source, destination, channel)))
    const bytes = lockstep.remainingBytes
    const drainMs = channel.msFor(bytes)
    return { size, lowerBoundMs: downMs + drainMs + upMs, lockstep, serial, bytes, downMs, drainMs, upMs }
  }).pipe(Effect.provide(SimulationClock.layer))

/**
 * Figure 1: group switchover downtime on virtual time, Lockstep against the lower bound of the
 * same parameters and against a serial (QEMU-style) schedule run by the same executor.
 */
export const downtimeFigure = (options: DowntimeOptions): Effect.Effect<Figure> =>
  Effect.gen(function* () {
    const results: Array<SizeResult> = []
    for (const size of options.sizes) results.push(yield* measureSize(size, options))
    const rows: Array<Row> = []
    for (const r of results) {
      rows.push(
        contextRow(`${r.size} devices: Lockstep downtime`, r.lockstep.downtimeMs, "ms"),
        contextRow(`${r.size} devices: lower bound`, r.lowerBoundMs, "ms"),
        contextRow(`${r.size} devices: serial downtime`, r.serial.downtimeMs, "ms"),
        goalRow(
          `${r.size} devices: Lockstep/lower bound`,
          r.lockstep.downtimeMs / r.lowerBoundMs,
          "×",
          atMost(1.05, "≤ 1.05")
        )
      )
    }
    const growth = results.map((r) => r.serial.downtimeMs / r.lockstep.downtimeMs)
    results.forEach((r, i) => {
      const grows = i === 0 || (growth[i] ?? 0) > (growth[i - 1] ?? 0)
      rows.push(
        goalRow(`${r.size} devices: serial/Lockstep`, growth[i], "×", {
          text: i === 0 ? "grows with size" : `> ${(growth[i - 1] ?? 0).toFixed(2)}`,
          holds: () => grows
        })
      )
    })
    const violations = results.reduce((n, r) => n + r.lockstep.violations + r.serial.violations, 0)
    rows.push(goalRow("invariant violations (all runs)", violations, "", atMost(0, "0")))
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
    return {
      figure: 1,
      title: "Group switchover downtime (virtual time)",
      method: `N devices = N-1 GPUs in one P2P domain + a NIC writing into every GPU, each in a DMA fabric; source in PRE_COPY with ${mib(options.gpuRemainingBytes)} per GPU and ${mib(options.nicRemainingBytes)} for the NIC left for STOP_COPY; one channel of ${(options.channelBytesPerSecond / 1e9).toFixed(0)} GB/s. Downtime runs from the first switchover arc to the last destination device RUNNING: source enterStopCopy, drain, destination resume. @lockstep/migration is a placeholder, so the channel is modelled here: a virtual-time link that carries one 1 MiB chunk at a time (bytes / bandwidth) from the source devices' STOP_COPY reads into the destination devices' RESUMING writes; RESUMING → STOP validates every byte.`,
      rows,
      notes: [
        ...results.map(
          (r) =>
            `${r.size} devices: lower bound = switchover critical path ${r.downMs} ms + ${mib(r.bytes)} on the channel ${r.drainMs.toFixed(2)} ms + resume critical path ${r.upMs} ms; drained ${mib(r.lockstep.drainedBytes)} (Lockstep), ${mib(r.serial.drainedBytes)} (serial).`
        ),
        "Serial: the same plans with every arc chained after the previous one in plan order (all quiesce arcs device by device, then all stop-copy arcs; likewise on resume), and one device drained after another."
      ]
    } satisfies Figure
  })
