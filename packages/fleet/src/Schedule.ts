import type { GroupDevice } from "@lockstep/coordinator"
import { hasFlag, path, type State } from "@lockstep/fsm"
import { arcLatency, resolveSimDeviceConfig, SimDeviceConfig } from "@lockstep/sim"
import { Result, Schema } from "effect"
import type { Fleet, FleetVm } from "./FleetFile.js"
import type { Placement } from "./Placement.js"

/**
 * When each VM of an evacuation starts, and how many migrate at once.
 *
 * The source host's NIC is shared by every migration leaving it, first come first served
 * (`NicBudget`), so the evacuation's bytes leave at the NIC's rate whenever at least one
 * migration is streaming: the transfers alone cannot finish before total bytes ÷ bandwidth.
 * What a schedule can lose is time in which the NIC idles because every running migration is
 * in a phase that sends nothing (handshake, the devices' arcs into pre-copy and RESUMING, the
 * switchover arcs, validation, the commit, the resume) — and, at the very end, the last VM's
 * own switchover and resume after its last byte.
 *
 * The schedule therefore:
 * - starts VMs largest first (longest processing time first): the migrations that finish last
 *   are the smallest, so the tail after the NIC drains is as short as it can be;
 * - runs `1 + ⌈gap ÷ stream⌉` at once, where `gap` is the longest non-streaming time of one VM
 *   (its arcs' kernel paths, timed from the simulation's latencies, plus an orchestration
 *   allowance) and `stream` the shortest time one VM takes to send its bytes at full rate: while
 *   one migration is in a gap the others have enough bytes in flight to keep the NIC busy. Any
 *   more would only stretch each VM's pre-copy (more pages dirtied and re-sent) and its time
 *   holding a reservation, without finishing sooner;
 * - gives the NIC to the VMs in that order (`NicBudget`'s priority): the first streams at full
 *   rate and the others fill its gaps, so the migrations stay staggered instead of finishing
 *   together and then all switching over while the NIC idles.
 *
 * A fleet file's `schedule.concurrency` overrides the count.
 */

/** What one VM's migration is expected to cost, from the fleet file alone. */
export interface VmCost {
  readonly vm: string
  readonly bytes: number
  /** Bytes ÷ the slower of its source's and destination's NIC, in ms. */
  readonly streamMs: number
  /** Before its first byte: the source into pre-copy, the destination into RESUMING (in parallel), in ms. */
  readonly headMs: number
  /** After its last byte: the destination validates and resumes, in ms (the switchover arcs precede the drain). */
  readonly tailMs: number
  /** The switchover arcs of the source, in ms. */
  readonly switchoverMs: number
}

/** A VM in the order it starts, with where it goes. */
export interface ScheduledVm extends Placement {
  readonly cost: VmCost
}

/** The evacuation's schedule. */
export interface EvacuationSchedule {
  /** In start order. */
  readonly vms: ReadonlyArray<ScheduledVm>
  /** How many migrate at once. */
  readonly concurrency: number
  /** Why that many, as a sentence. */
  readonly why: string
}

/**
 * Per-VM time the orchestration itself takes besides the devices' arcs (the workflow's steps
 * and their storage, the reservation, connecting to the devices, the handshake, the journal),
 * in ms: 0.3–0.5 s measured on the 2-core development machine under load.
 */
export const orchestrationAllowanceMs = 400

const decodeSim = Schema.decodeUnknownResult(SimDeviceConfig)

/** The time a device takes along its kernel path from `from` to `to`, in ms (0 when it has no such path). */
const pathMs = (device: GroupDevice, from: State, to: State): number => {
  const sim = device.sim === undefined ? Result.succeed({}) : decodeSim(device.sim)
  const config = resolveSimDeviceConfig(Result.isSuccess(sim) ? sim.success : {})
  const states = path(from, to, device.flags)
  if (Result.isFailure(states)) return 0
  let ms = 0
  for (let i = 1; i < states.success.length; i++) {
    const a = states.success[i - 1]
    const b = states.success[i]
    if (a !== undefined && b !== undefined) ms += arcLatency(config, { from: a, to: b })
  }
  return ms
}

const slowest = (devices: ReadonlyArray<GroupDevice>, f: (d: GroupDevice) => number): number =>
  devices.reduce((m, d) => Math.max(m, f(d)), 0)

/** The expected cost of migrating `vm` from `source` to `destination`. */
export const costOf = (fleet: Fleet, vm: FleetVm, destination: string): VmCost => {
  const nic = (name: string) => fleet.hosts.find((h) => h.name === name)?.nicBandwidth ?? Number.POSITIVE_INFINITY
  const rate = Math.min(nic(vm.host), nic(destination))
  const devices = vm.group.devices
  const precopy = (d: GroupDevice): State => (hasFlag(d.flags, "PRE_COPY") ? "PRE_COPY" : "RUNNING")
  const headMs = Math.max(
    slowest(devices, (d) => pathMs(d, "RUNNING", precopy(d))),
    slowest(devices, (d) => pathMs(d, "STOP", "RESUMING"))
  )
  const switchoverMs = slowest(devices, (d) => pathMs(d, precopy(d), "STOP_COPY"))
  const tailMs =
    slowest(devices, (d) => pathMs(d, "RESUMING", "STOP")) + slowest(devices, (d) => pathMs(d, "STOP", "RUNNING"))
  return { vm: vm.name, bytes: vm.bytes, streamMs: (vm.bytes / rate) * 1000, headMs, tailMs, switchoverMs }
}

/** Orders the placed VMs and chooses how many migrate at once (see the module comment). */
export const schedule = (fleet: Fleet, placements: ReadonlyArray<Placement>): EvacuationSchedule => {
  const vms = placements
    .map((p): ScheduledVm => ({ ...p, cost: costOf(fleet, p.vm, p.destination) }))
    .sort((a, b) => b.cost.bytes - a.cost.bytes || a.vm.name.localeCompare(b.vm.name))
  if (vms.length === 0) return { vms, concurrency: 1, why: "nothing to migrate" }
  if (fleet.concurrency !== undefined)
    return {
      vms,
      concurrency: Math.min(fleet.concurrency, vms.length),
      why: `${fleet.concurrency} at once, as the fleet file says`
    }
  const gap =
    Math.max(...vms.map((v) => v.cost.headMs + v.cost.switchoverMs + v.cost.tailMs)) + orchestrationAllowanceMs
  const stream = Math.max(1e-3, Math.min(...vms.map((v) => v.cost.streamMs)))
  const concurrency = Math.min(vms.length, 1 + Math.ceil(gap / stream))
  return {
    vms,
    concurrency,
    why: `largest first, ${concurrency} at once: a VM spends up to ${gap.toFixed(0)} ms not sending (arcs, commit, orchestration) and at least ${stream.toFixed(0)} ms sending, so ${concurrency - 1} other${concurrency === 2 ? " keeps" : "s keep"} the NIC busy meanwhile`
  }
}
