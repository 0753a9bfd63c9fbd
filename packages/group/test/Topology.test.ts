import { describe, expect, it } from "@effect/vitest"
import { cliqueDoc, groupOf } from "./groups.js"

describe("Topology", () => {
  it("stores a 1024-device shared-IOMMU clique as one domain", () => {
    const { topology } = groupOf(cliqueDoc(1024))
    expect(topology.domains.length).toBe(1)
    expect(topology.explicitEdges).toEqual([])
    expect(topology.edgeCount).toBe(1024 * 1023)
    expect(topology.targetsOf("gpu17").length).toBe(1023)
    expect(topology.initiatorsOf("gpu17")).not.toContain("gpu17")
    expect(topology.hasEdge("gpu1023", "gpu0")).toBe(true)
    expect(topology.hasEdge("gpu3", "gpu3")).toBe(false)
    const first = topology.edges()
    expect([first.next().value, first.next().value]).toEqual([
      ["gpu0", "gpu1"],
      ["gpu0", "gpu2"]
    ])
  })

  it("combines domains with explicit edges, dropping duplicates and edges a domain implies", () => {
    const { topology } = groupOf({
      devices: ["nic0", "gpu0", "gpu1", "gpu2"].map((id) => ({ id, kind: "pci", flags: 3 })),
      topology: {
        domains: [["gpu0", "gpu1"]],
        edges: [
          ["nic0", "gpu0"],
          ["gpu0", "gpu1"],
          ["nic0", "gpu0"],
          ["gpu2", "nic0"]
        ]
      }
    })
    expect(topology.explicitEdges).toEqual([
      ["nic0", "gpu0"],
      ["gpu2", "nic0"]
    ])
    expect([...topology.edges()]).toEqual([
      ["gpu0", "gpu1"],
      ["gpu1", "gpu0"],
      ["nic0", "gpu0"],
      ["gpu2", "nic0"]
    ])
    expect(topology.edgeCount).toBe(4)
    expect(topology.targetsOf("gpu0")).toEqual(["gpu1"])
    expect(topology.initiatorsOf("gpu0")).toEqual(["gpu1", "nic0"])
    expect(topology.hasOutgoingEdge("gpu2")).toBe(true)
    expect(topology.hasOutgoingEdge("nic1")).toBe(false)
    expect(topology.hasEdge("gpu0", "nic0")).toBe(false)
    expect(topology.targetsOf("nic9")).toEqual([])
  })
})
