import type { FleetStore, HostControl, Report } from "@lockstep/fleet"
import { formatBytes } from "./Format.js"

/**
 * How `lockstep fleet` shows an evacuation: progress lines while it runs (on a terminal), the
 * summary and the JSON object when it is done, and `status`.
 */

/** Where each VM's devices are, as the hosts report them: `{vm: {host: {device: state}}}`. */
export type DeviceStates = Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, string>>>>>>

/** What the hosts said at the end: device states and P2P violations per VM. */
export interface HostFindings {
  readonly states: DeviceStates
  /** P2P violations per VM, over every host holding its devices. */
  readonly violations: Readonly<Record<string, number>>
  readonly writes: number
  /** Hosts that did not answer. */
  readonly unreachable: ReadonlyArray<string>
}

/** Gathers the hosts' inventories. */
export const findings = (
  inventories: ReadonlyArray<HostControl.HostInventory>,
  unreachable: ReadonlyArray<string>
): HostFindings => {
  const states: Record<string, Record<string, Record<string, string>>> = {}
  const violations: Record<string, number> = {}
  let writes = 0
  for (const inv of inventories)
    for (const vm of inv.vms) {
      states[vm.vm] ??= {}
      const byHost = states[vm.vm] ?? {}
      byHost[inv.host] = Object.fromEntries(
        vm.devices.map((d) => [d.id, d.inFlight === undefined ? d.state : `${d.state}→${d.inFlight}`])
      )
      violations[vm.vm] = (violations[vm.vm] ?? 0) + vm.violations + vm.corruptingWrites
      writes += vm.writes
    }
  return { states, violations, writes, unreachable }
}

const phaseOf = (vm: FleetStore.VmRecord): string =>
  vm.status === "migrating" ? (vm.phase ?? "migrating") : vm.status === "reserving" ? "reserving" : vm.status

/**
 * The progress lines of a running evacuation: a summary, then one line per VM under way with
 * its step: `reserving` its destination, `attach` (its devices on both hosts), `recover` (what
 * an earlier run left), then the migration's phases (`handshake` … `resume`).
 */
export const progressLines = (view: Report.EvacuationView): ReadonlyArray<string> => {
  const count = (s: FleetStore.VmStatus) => view.vms.filter((v) => v.status === s).length
  const active = view.vms.filter((v) => v.status === "migrating" || v.status === "reserving")
  return [
    `evacuating ${view.evacuation.host}: ${count("migrated")}/${view.vms.length} migrated, ${active.length} under way, ${count("rolled-back")} rolled back — ${(view.makespanMs / 1000).toFixed(1)} s`,
    ...active.map(
      (v) =>
        `  ${v.vm} → ${v.destination}  ${phaseOf(v).padEnd(10)} ${formatBytes(v.bytesSent)} of ${formatBytes(v.bytesTotal)}${v.attempts > 1 ? `  (attempt ${v.attempts})` : ""}`
    )
  ]
}

/** The JSON of one VM in `evacuate --json` and `status --json`. */
export const vmJson = (vm: FleetStore.VmRecord, found: HostFindings | undefined) => ({
  vm: vm.vm,
  source: vm.source,
  destination: vm.destination,
  outcome: vm.status,
  ...(vm.downtimeMs === undefined ? {} : { downtimeMs: vm.downtimeMs }),
  bytes: vm.bytesSent,
  attempts: vm.attempts,
  ...(vm.reason === undefined ? {} : { reason: vm.reason }),
  ...(found === undefined ? {} : { devices: found.states[vm.vm] ?? {}, violations: found.violations[vm.vm] ?? 0 })
})

/** One line per VM of a finished (or running) evacuation. */
export const vmLine = (vm: FleetStore.VmRecord): string => {
  const tail =
    vm.status === "migrated"
      ? `migrated, downtime ${vm.downtimeMs === undefined ? "?" : `${vm.downtimeMs.toFixed(1)} ms`}${vm.reason === undefined ? "" : ` (${vm.reason})`}`
      : vm.status === "rolled-back"
        ? `rolled back: ${vm.reason ?? "?"}`
        : phaseOf(vm)
  return `  ${vm.vm} → ${vm.destination}: ${tail}${vm.attempts > 1 ? ` [${vm.attempts} runs]` : ""}`
}

/** The readable summary of an evacuation. */
export const summaryText = (
  view: Report.EvacuationView,
  found: HostFindings | undefined,
  why: string | undefined
): string => {
  const migrated = view.vms.filter((v) => v.status === "migrated").length
  const bytes = view.vms.reduce((n, v) => n + v.bytesSent, 0)
  const downtimes = view.vms.flatMap((v) => (v.downtimeMs === undefined ? [] : [v.downtimeMs]))
  const lines = [
    `evacuation ${view.evacuation.id} of ${view.evacuation.host}: ${migrated} of ${view.vms.length} VMs migrated in ${(view.makespanMs / 1000).toFixed(2)} s (${view.evacuation.status})`,
    ...(why === undefined ? [] : [`  schedule: ${why}`]),
    `  streamed ${formatBytes(bytes)}${downtimes.length === 0 ? "" : `; downtime per VM ${Math.min(...downtimes).toFixed(1)}–${Math.max(...downtimes).toFixed(1)} ms`}`,
    ...view.vms.map(vmLine)
  ]
  if (found !== undefined) {
    const total = Object.values(found.violations).reduce((a, b) => a + b, 0)
    lines.push(`P2P violations: ${total} among ${found.writes} P2P writes on the simulated hosts`)
    if (found.unreachable.length > 0) lines.push(`hosts that did not answer: ${found.unreachable.join(", ")}`)
  }
  return lines.join("\n")
}
