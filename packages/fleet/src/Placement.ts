import { Result } from "effect"
import { FleetError, type Unfit } from "./FleetError.js"
import type { Fleet, FleetHost, FleetVm } from "./FleetFile.js"

/** Where one VM goes. */
export interface Placement {
  readonly vm: FleetVm
  readonly destination: string
}

const devicesOf = (vm: FleetVm): number => vm.group.devices.length

/** Why `host` cannot take `vm` given `free` devices there, or `undefined` if it can. */
const unfitReason = (vm: FleetVm, host: FleetHost, free: number, evacuated: string): string | undefined => {
  if (host.name === evacuated) return "it is the host being evacuated"
  const missing = Object.entries(vm.requires).filter(([key, value]) => host.labels[key] !== value)
  if (missing.length > 0) return `lacks ${missing.map(([k, v]) => `${k}=${v}`).join(", ")}`
  if (vm.backend === "vfio-user" && vm.sockets[host.name] === undefined) return "the VM has no vfio-user sockets there"
  if (free < devicesOf(vm)) return `${free} free devices`
  return undefined
}

/**
 * Places every VM of `evacuated` on another host, before anything moves.
 *
 * VMs that name a destination (`to`) are placed first. The others go largest first, each to
 * the fitting host whose NIC would finish the bytes placed on it soonest (bytes placed ÷ NIC
 * bandwidth, this VM's included): every destination's incoming link is a bottleneck of its
 * own, and balancing them keeps the source's NIC the only one that limits the evacuation.
 * Ties go to the host with the most free devices, then by name. A host fits if it is not the
 * evacuated host, has every label the VM requires, has the VM's vfio-user sockets (for such
 * VMs) and enough free devices (capacity minus the devices of the VMs on it and placed on it).
 *
 * Fails with a `FleetError` (`NoCapacity`) for the first VM that fits nowhere, naming every host and why.
 */
export const place = (fleet: Fleet, evacuated: string): Result.Result<ReadonlyArray<Placement>, FleetError> => {
  const free = new Map<string, number>(fleet.hosts.map((h) => [h.name, h.capacity]))
  const placedBytes = new Map<string, number>(fleet.hosts.map((h) => [h.name, 0]))
  for (const vm of fleet.vms) free.set(vm.host, (free.get(vm.host) ?? 0) - devicesOf(vm))
  const leaving = fleet.vms.filter((vm) => vm.host === evacuated)
  const placements: Array<Placement> = []
  const take = (vm: FleetVm, host: string) => {
    free.set(host, (free.get(host) ?? 0) - devicesOf(vm))
    placedBytes.set(host, (placedBytes.get(host) ?? 0) + vm.bytes)
    placements.push({ vm, destination: host })
  }
  const refuse = (vm: FleetVm, hosts: ReadonlyArray<FleetHost>) =>
    Result.fail(
      FleetError.noCapacity({
        vm: vm.name,
        devices: devicesOf(vm),
        candidates: hosts.flatMap((h): Array<Unfit> => {
          const reason = unfitReason(vm, h, free.get(h.name) ?? 0, evacuated)
          return reason === undefined ? [] : [{ host: h.name, reason }]
        })
      })
    )

  for (const vm of leaving.filter((v) => v.to !== undefined)) {
    const host = fleet.hosts.find((h) => h.name === vm.to)
    if (host === undefined || unfitReason(vm, host, free.get(host.name) ?? 0, evacuated) !== undefined)
      return refuse(vm, host === undefined ? [] : [host])
    take(vm, host.name)
  }
  const bySize = leaving
    .filter((v) => v.to === undefined)
    .sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name))
  for (const vm of bySize) {
    const fitting = fleet.hosts.filter((h) => unfitReason(vm, h, free.get(h.name) ?? 0, evacuated) === undefined)
    const finish = (h: FleetHost) => ((placedBytes.get(h.name) ?? 0) + vm.bytes) / h.nicBandwidth
    const best = fitting.sort(
      (a, b) =>
        finish(a) - finish(b) || (free.get(b.name) ?? 0) - (free.get(a.name) ?? 0) || a.name.localeCompare(b.name)
    )[0]
    if (best === undefined) return refuse(vm, fleet.hosts)
    take(vm, best.name)
  }
  return Result.succeed(placements)
}
