/*
 * The groups the benchmarks run on, written as group documents and decoded by the product's own
 * `decodeGroup`, so that they are exactly what a user's group file would give.
 */
import { decodeGroup, type Group } from "@lockstep/coordinator"
import type { SimDeviceConfig, SimulatedGroup } from "@lockstep/sim"
import { Effect } from "effect"

/** P2P invariant violations and corrupting writes the group's fabric saw, once its writes have settled. */
export const fabricViolations = (sim: SimulatedGroup): Effect.Effect<number> =>
  Effect.andThen(
    sim.fabric.settle,
    // Read once settled: the writes that land while settling are the ones that can break the rule.
    Effect.sync(() => sim.fabric.violations().length + sim.fabric.corruptingWrites().length)
  )

/** Every capability, as group documents name them. */
const flags = ["STOP_COPY", "P2P", "PRE_COPY"] as const

/**
 * `n` PCI devices with every capability behind one IOMMU: every device may write into every
 * other; `sim` sets their simulation parameters.
 */
export const sharedIommuGroup = (n: number, prefix = "gpu", sim?: SimDeviceConfig): Effect.Effect<Group> =>
  decodeGroup({
    devices: Array.from({ length: n }, (_, i) => ({
      id: `${prefix}${i}`,
      kind: "pci",
      flags,
      ...(sim === undefined ? {} : { sim })
    })),
    topology: "shared-iommu"
  }).pipe(Effect.orDie)

/** Simulation parameters of the GPUs and the NIC of an accelerator group. */
export interface AcceleratorSim {
  readonly gpu: SimDeviceConfig
  readonly nic: SimDeviceConfig
}

/**
 * `size` devices: `size - 1` GPUs that all write into each other (one P2P domain) and a NIC that
 * writes into every GPU (explicit edges; nothing writes into the NIC). Every device has every
 * capability, as mlx5 and the GPUs with VFIO migration drivers do.
 */
export const acceleratorGroup = (size: number, sim: AcceleratorSim): Effect.Effect<Group> => {
  const gpus = Array.from({ length: size - 1 }, (_, i) => `gpu${i}`)
  return decodeGroup({
    devices: [
      ...gpus.map((id) => ({ id, kind: "pci", flags, sim: sim.gpu })),
      { id: "nic", kind: "pci", flags, sim: sim.nic }
    ],
    topology: { domains: gpus.length > 1 ? [gpus] : [], edges: gpus.map((gpu) => ["nic", gpu]) }
  }).pipe(Effect.orDie)
}
