import { hasFlag } from "@lockstep/fsm"
import type { Group } from "./Group.js"
import type { Edge } from "./Topology.js"

/** A device that makes its group not migratable, with the edges that need P2P from it. */
export interface Blocker {
  readonly device: string
  /**
   * Its outgoing edges, at most {@link maxBlockerEdges} of them (a clique member has one per
   * other member); `edgeCount` has the full number.
   */
  readonly edges: ReadonlyArray<Edge>
  /** How many outgoing edges the device has in all. */
  readonly edgeCount: number
  readonly reason: string
}

/** Whether a group is migratable, and if not, every device that blocks it. */
export type Report =
  | { readonly migratable: true; readonly blockers: readonly [] }
  | { readonly migratable: false; readonly blockers: readonly [Blocker, ...Array<Blocker>] }

/** The most edges a blocker lists; a 1024-GPU clique would otherwise list 1023 per device. */
export const maxBlockerEdges = 16

/**
 * The migratability rule (DESIGN.md section 2): a group is migratable iff every device with an
 * outgoing edge has the P2P flag, so that it can stop writing (enter RUNNING_P2P) before any of
 * its targets halts. A device that only receives writes, or has no edges at all, needs no P2P:
 * it goes RUNNING → STOP directly.
 */
export const check = (group: Group): Report => {
  const blockers: Array<Blocker> = []
  for (const device of group.devices) {
    if (hasFlag(device.flags, "P2P") || !group.topology.hasOutgoingEdge(device.id)) continue
    const targets = group.topology.targetsOf(device.id)
    const shown = targets.slice(0, maxBlockerEdges)
    const named = `${shown.slice(0, 3).join(", ")}${targets.length > 3 ? ", …" : ""}`
    blockers.push({
      device: device.id,
      edges: shown.map((target): Edge => [device.id, target]),
      edgeCount: targets.length,
      reason: `${device.id} may write into ${targets.length} device${targets.length === 1 ? "" : "s"} (${named}) but does not support P2P, so it cannot stop writing into them before they halt`
    })
  }
  const [first, ...rest] = blockers
  return first === undefined ? { migratable: true, blockers: [] } : { migratable: false, blockers: [first, ...rest] }
}

/**
 * QEMU's rule, for comparison: with more than one VFIO device, migration is blocked unless
 * every device supports P2P, whatever the topology (`vfio_multiple_devices_migration_is_supported`).
 * Strictly more conservative than {@link check}: it also blocks a group whose devices without
 * P2P write into nobody, such as an s390 channel device or a GPU that is only a target.
 */
export const qemuWouldBlock = (group: Group): boolean =>
  group.devices.length > 1 && group.devices.some((d) => !hasFlag(d.flags, "P2P"))
