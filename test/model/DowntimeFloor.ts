import type { Flags, State } from "@lockstep/fsm"
import type { ModelEdge } from "./Edges.js"
import { kernelPath, peerClass, supports } from "./Kernel.js"

/**
 * The downtime floor of a group migration, from the scenario alone (DESIGN.md sections 1–3):
 * no planner, executor or topology code, only the model's kernel table and the group's edges.
 * Downtime runs from the first switchover arc on the source to the last destination device
 * RUNNING. No schedule that obeys the rules below can be faster:
 *
 * 1. Switchover: every source device walks its kernel path from PRE_COPY (RUNNING without the
 *    PRE_COPY flag) to STOP_COPY, each arc taking its device's latency. The P2P rule forces
 *    waits: an arc into a halted state waits until every initiator of its device is
 *    non-initiating for good; an arc into an initiating state waits until every target of its
 *    device is non-halted for good (an arc in flight counts as both ends, so "until" is the end
 *    of the other device's arc). Everything else starts as early as its own previous arc ends.
 * 2. Drain: a device's STOP_COPY bytes can leave once it is in STOP_COPY, over one link of
 *    `bytesPerSecond`, one byte at a time. Chunks interleave, so the link is modelled as
 *    preemptive and never idle while a ready device has bytes (earliest-ready-first keeps it
 *    so); among ready devices the one with the longest validation goes first, which minimises
 *    the last validation (Jackson's rule, optimal for one preemptive link with release times).
 * 3. Validate: a destination device goes RESUMING → STOP (its kernel path) no earlier than its
 *    last byte arrived.
 * 4. Commit: no destination device leaves STOP before every device has validated (the
 *    destination votes to commit only then; the channel and the journal take no time here).
 * 5. Resume: the destination group STOP → RUNNING under the same P2P rule as step 1.
 */

/** One device of the scenario. */
export interface FloorDevice {
  readonly id: string
  readonly flags: Flags
  /** Latency of each direct arc, keyed `"FROM>TO"`, in ms; an arc not listed takes `otherArcMs`. */
  readonly arcMs: Readonly<Partial<Record<string, number>>>
  readonly otherArcMs: number
  /** Bytes the device has left to send once in STOP_COPY (pre-copy has moved the rest). */
  readonly stopCopyBytes: number
}

/** A migration scenario: the devices (source and destination alike), the group's P2P edges, the link. */
export interface FloorScenario {
  readonly devices: ReadonlyArray<FloorDevice>
  readonly edges: ReadonlyArray<ModelEdge>
  readonly bytesPerSecond: number
}

/** The floor and its parts, in ms from the first switchover arc. */
export interface DowntimeFloor {
  readonly ms: number
  /** When each source device reaches STOP_COPY. */
  readonly readyMs: Readonly<Record<string, number>>
  /** When each device's last byte has crossed the link. */
  readonly arrivedMs: Readonly<Record<string, number>>
  /** When every destination device has validated (the earliest commit). */
  readonly validatedMs: number
  /** The resume's critical path: from the commit to the last device RUNNING. */
  readonly resumeMs: number
}

/** Latency of one arc of a device. */
export const arcMsOf = (device: FloorDevice, from: State, to: State): number =>
  device.arcMs[`${from}>${to}`] ?? device.otherArcMs

const pathOf = (device: FloorDevice, from: State, to: State): ReadonlyArray<State> => {
  const walked = kernelPath(device.flags, from, to)
  if (!walked.ok) throw new Error(`${device.id}: ${from} → ${to}: ${walked.reason}`)
  return walked.states
}

/** The latencies of every arc of a device's kernel path from `from` to `to`, added up. */
const pathMs = (device: FloorDevice, from: State, to: State): number =>
  pathOf(device, from, to).reduce((ms, s, i, states) => {
    const next = states[i + 1]
    return next === undefined ? ms : ms + arcMsOf(device, s, next)
  }, 0)

/** Where a source device is when pre-copy ends. */
const switchoverStart = (device: FloorDevice): State => (supports(device.flags, "PRE_COPY") ? "PRE_COPY" : "RUNNING")

/**
 * The earliest time each device arrives at `to` from `from(device)`, starting no earlier than
 * `release(device)`, every arc as early as its own previous arc and the P2P rule allow.
 */
export const earliestTransition = (
  scenario: Pick<FloorScenario, "devices" | "edges">,
  from: (device: FloorDevice) => State,
  to: State,
  release: (device: FloorDevice) => number
): Readonly<Record<string, number>> => {
  const byId = new Map(scenario.devices.map((d) => [d.id, d] as const))
  const paths = new Map(scenario.devices.map((d) => [d.id, pathOf(d, from(d), to)] as const))
  const ends = new Map<string, Array<number>>()
  const visiting = new Set<string>()

  /** When a device enters, for good, the states for which `ok` holds: the end of the arc after which it stays there. */
  const settledAt = (id: string, ok: (s: State) => boolean): number => {
    const states = paths.get(id) ?? []
    let last = states.length - 1
    if (!ok(states[last] ?? "ERROR")) return Number.POSITIVE_INFINITY
    while (last > 0 && ok(states[last - 1] ?? "ERROR")) last--
    return last === 0 ? 0 : endOf(id, last - 1)
  }

  /** The end of arc `k` (from `states[k]` to `states[k + 1]`) of device `id`. */
  const endOf = (id: string, k: number): number => {
    const known = ends.get(id)?.[k]
    if (known !== undefined) return known
    const key = `${id}#${k}`
    if (visiting.has(key)) throw new Error(`no safe order: arc ${k} of ${id} waits for itself`)
    visiting.add(key)
    const device = byId.get(id)
    const states = paths.get(id) ?? []
    const a = states[k]
    const b = states[k + 1]
    if (device === undefined || a === undefined || b === undefined) throw new RangeError(`${id} has no arc ${k}`)
    let start = k === 0 ? release(device) : endOf(id, k - 1)
    if (peerClass[b] === "halted")
      for (const [initiator, target] of scenario.edges)
        if (target === id)
          start = Math.max(
            start,
            settledAt(initiator, (s) => peerClass[s] !== "initiating")
          )
    if (peerClass[b] === "initiating")
      for (const [initiator, target] of scenario.edges)
        if (initiator === id)
          start = Math.max(
            start,
            settledAt(target, (s) => peerClass[s] !== "halted")
          )
    if (!Number.isFinite(start)) throw new Error(`no safe order: ${id} ${a} → ${b} would wait forever`)
    const end = start + arcMsOf(device, a, b)
    visiting.delete(key)
    const list = ends.get(id) ?? []
    list[k] = end
    ends.set(id, list)
    return end
  }

  return Object.fromEntries(
    scenario.devices.map((d) => {
      const arcs = (paths.get(d.id)?.length ?? 1) - 1
      return [d.id, arcs === 0 ? release(d) : endOf(d.id, arcs - 1)] as const
    })
  )
}

/**
 * When each device's last byte has crossed one preemptive link: released at `readyMs`, the
 * ready device with the longest `tailMs` served first (ties: earliest ready, then scenario order).
 */
export const drainLink = (
  jobs: ReadonlyArray<{
    readonly id: string
    readonly readyMs: number
    readonly bytes: number
    readonly tailMs: number
  }>,
  bytesPerSecond: number
): Readonly<Record<string, number>> => {
  const left = new Map(jobs.map((j) => [j.id, (j.bytes * 1000) / bytesPerSecond] as const))
  const done: Record<string, number> = {}
  const order = [...jobs].sort((x, y) => x.readyMs - y.readyMs)
  let now = 0
  while (Object.keys(done).length < jobs.length) {
    const ready = order.filter((j) => j.readyMs <= now && done[j.id] === undefined)
    const pending = order.filter((j) => j.readyMs > now)
    const next = pending[0]?.readyMs ?? Number.POSITIVE_INFINITY
    const serving = ready.reduce<(typeof ready)[number] | undefined>(
      (best, j) => (best === undefined || j.tailMs > best.tailMs ? j : best),
      undefined
    )
    if (serving === undefined) {
      now = next
      continue
    }
    const need = left.get(serving.id) ?? 0
    if (now + need <= next) {
      now += need
      done[serving.id] = now
      left.set(serving.id, 0)
    } else {
      left.set(serving.id, need - (next - now))
      now = next
    }
  }
  return done
}

/** The downtime floor of a scenario (see the rules above). */
export const downtimeFloor = (scenario: FloorScenario): DowntimeFloor => {
  const readyMs = earliestTransition(scenario, switchoverStart, "STOP_COPY", () => 0)
  const arrivedMs = drainLink(
    scenario.devices.map((d) => ({
      id: d.id,
      readyMs: readyMs[d.id] ?? 0,
      bytes: d.stopCopyBytes,
      tailMs: pathMs(d, "RESUMING", "STOP")
    })),
    scenario.bytesPerSecond
  )
  const validated = earliestTransition(
    scenario,
    () => "RESUMING",
    "STOP",
    (d) => arrivedMs[d.id] ?? 0
  )
  const validatedMs = Math.max(0, ...Object.values(validated))
  const running = earliestTransition(
    scenario,
    () => "STOP",
    "RUNNING",
    () => 0
  )
  const resumeMs = Math.max(0, ...Object.values(running))
  return { ms: validatedMs + resumeMs, readyMs, arrivedMs, validatedMs, resumeMs }
}

/**
 * A serial (QEMU-style) switchover of the same scenario: every arc of every device one after
 * another (QEMU's VM state change handlers call each device's SET_STATE in turn: all of them
 * into the P2P states, then all of them on), every device's bytes one after another on the
 * link (its migration thread saves one device after the other), then every destination arc one
 * after another. In that order the P2P rule holds without waiting, so nothing overlaps.
 */
export const serialDowntimeMs = (scenario: FloorScenario): number =>
  scenario.devices.reduce(
    (ms, d) =>
      ms +
      pathMs(d, switchoverStart(d), "STOP_COPY") +
      (d.stopCopyBytes * 1000) / scenario.bytesPerSecond +
      pathMs(d, "RESUMING", "RUNNING"),
    0
  )
