import { describe, expect, it } from "@effect/vitest"
import { Migratability } from "@lockstep/group"
import { all, cliqueDoc, groupOf, mixedDoc } from "./groups.js"

describe("Migratability.check", () => {
  it("passes a mixed group whose only devices without P2P write into nobody, where QEMU blocks", () => {
    // gpu4 (no P2P) is only a target; vgpu0 (mdev) and ccw0 (s390) have no edges at all.
    const group = groupOf(mixedDoc)
    expect(Migratability.check(group)).toEqual({ migratable: true, blockers: [] })
    expect(Migratability.qemuWouldBlock(group)).toBe(true)
  })

  it("blocks a NIC without P2P that writes into GPUs, naming it and its edges", () => {
    const group = groupOf({
      ...mixedDoc,
      devices: mixedDoc.devices.map((d) => (d.id === "nic0" ? { ...d, flags: ["STOP_COPY"] } : d))
    })
    expect(Migratability.check(group)).toEqual({
      migratable: false,
      blockers: [
        {
          device: "nic0",
          edges: [
            ["nic0", "gpu0"],
            ["nic0", "gpu1"]
          ],
          edgeCount: 2,
          reason:
            "nic0 may write into 2 devices (gpu0, gpu1) but does not support P2P, so it cannot stop writing into them before they halt"
        }
      ]
    })
    expect(Migratability.qemuWouldBlock(group)).toBe(true)
  })

  it("bounds the edges listed for a clique member", () => {
    const doc = cliqueDoc(64)
    const group = groupOf({
      devices: doc.devices.map((d) => (d.id === "gpu5" ? { ...d, flags: ["STOP_COPY", "PRE_COPY"] } : d))
    })
    const report = Migratability.check(group)
    expect(report.migratable).toBe(false)
    expect(report.blockers.map((b) => [b.device, b.edges.length, b.edgeCount])).toEqual([
      ["gpu5", Migratability.maxBlockerEdges, 63]
    ])
    expect(report.blockers[0]?.reason.startsWith("gpu5 may write into 63 devices (gpu0, gpu1, gpu2, …)")).toBe(true)
  })

  it("compares with QEMU's rule", () => {
    const cases: ReadonlyArray<readonly [string, unknown, boolean, boolean]> = [
      ["all GPUs with P2P", cliqueDoc(4), true, false],
      ["one device without P2P", { devices: [{ id: "gpu0", kind: "pci", flags: ["STOP_COPY"] }] }, true, false],
      [
        "a GPU with P2P beside an s390 device without",
        { devices: [cliqueDoc(1).devices[0], { id: "ccw0", kind: "ccw", flags: ["STOP_COPY"] }] },
        true,
        true
      ],
      [
        "two GPUs without P2P, no topology",
        { devices: ["gpu0", "gpu1"].map((id) => ({ id, kind: "pci", flags: ["STOP_COPY"] })), topology: "none" },
        true,
        true
      ],
      [
        "two GPUs without P2P, shared IOMMU",
        { devices: ["gpu0", "gpu1"].map((id) => ({ id, kind: "pci", flags: ["STOP_COPY"] })) },
        false,
        true
      ],
      [
        "a GPU with P2P writing into one without",
        {
          devices: [
            { id: "gpu0", kind: "pci", flags: all },
            { id: "gpu1", kind: "pci", flags: ["STOP_COPY"] }
          ],
          topology: { edges: [["gpu0", "gpu1"]] }
        },
        true,
        true
      ]
    ]
    for (const [what, doc, migratable, qemuBlocks] of cases) {
      const group = groupOf(doc)
      expect([what, Migratability.check(group).migratable, Migratability.qemuWouldBlock(group)]).toEqual([
        what,
        migratable,
        qemuBlocks
      ])
    }
  })
})
