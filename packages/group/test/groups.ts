import type { DeviceKind } from "@lockstep/device"
import type { Flag } from "@lockstep/fsm"
import { decodeGroup, type Group } from "@lockstep/group"
import { Effect } from "effect"

/** Decodes a group description that the test knows to be valid. */
export const groupOf = (doc: unknown): Group => Effect.runSync(decodeGroup(doc))

/** A device entry of a group description. */
export interface DeviceDoc {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: ReadonlyArray<Flag>
}

export const all: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]

/**
 * The mixed group of the README: four GPUs all-to-all (shared IOMMU among them), a NIC with
 * P2P writing into two GPUs, a GPU without P2P that is only a target, a vGPU (mdev), an s390
 * channel device.
 */
export const mixedDoc = {
  devices: [
    { id: "gpu0", kind: "pci", flags: all },
    { id: "gpu1", kind: "pci", flags: all },
    { id: "gpu2", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "gpu3", kind: "pci", flags: all },
    { id: "nic0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
    { id: "gpu4", kind: "pci", flags: ["STOP_COPY", "PRE_COPY"] },
    { id: "vgpu0", kind: "mdev", flags: ["STOP_COPY", "PRE_COPY"] },
    { id: "ccw0", kind: "ccw", flags: ["STOP_COPY"] }
  ],
  topology: {
    domains: [["gpu0", "gpu1", "gpu2", "gpu3"]],
    edges: [
      ["nic0", "gpu0"],
      ["nic0", "gpu1"],
      ["gpu0", "gpu4"],
      ["gpu1", "gpu4"]
    ]
  }
}

/** A shared-IOMMU clique of `n` PCI devices with all flags. */
export const cliqueDoc = (n: number, prefix = "gpu") => ({
  devices: Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, kind: "pci", flags: all }))
})
