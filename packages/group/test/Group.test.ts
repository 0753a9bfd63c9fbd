import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it, layer } from "@effect/vitest"
import { decodeGroup, type GroupError, loadGroupFile } from "@lockstep/group"
import { Effect } from "effect"

const device = (id: string, kind = "pci", flags: unknown = ["STOP_COPY", "P2P"]) => ({ id, kind, flags })

const problemsOf = (doc: unknown) =>
  Effect.flip(decodeGroup(doc)).pipe(
    Effect.map((e: GroupError) => e.problems.map((p) => (p.path === "" ? p.reason : `${p.path}: ${p.reason}`)))
  )

describe("decodeGroup", () => {
  it.effect("decodes devices, flags by name or mask, and keeps backend keys as they are", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup({
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { latency: { stop: 3 } } },
          { id: "vgpu0", kind: "mdev", flags: 1, vfioUser: { socket: "/run/vgpu0.sock" } },
          { id: "ccw0", kind: "ccw", flags: ["STOP_COPY", "P2P"] }
        ],
        topology: "shared-iommu"
      })
      expect(group.devices.map((d) => [d.id, d.kind, d.flags])).toEqual([
        ["gpu0", "pci", 7],
        ["vgpu0", "mdev", 1],
        ["ccw0", "ccw", 3]
      ])
      expect(group.devices[0]?.sim).toEqual({ latency: { stop: 3 } })
      expect(group.devices[1]?.vfioUser).toEqual({ socket: "/run/vgpu0.sock" })
    })
  )

  it.effect("defaults to shared-iommu: every pci device writes into every other pci device, and nothing else", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup({
        devices: [device("gpu0"), device("gpu1"), device("gpu2"), device("vgpu0", "mdev"), device("ap0", "ap")]
      })
      expect(group.declaredTopology).toBe("shared-iommu")
      expect(group.topology.edgeCount).toBe(6)
      expect(group.topology.targetsOf("gpu0")).toEqual(["gpu1", "gpu2"])
      expect(group.topology.initiatorsOf("vgpu0")).toEqual([])
      expect(group.topology.hasEdge("gpu2", "gpu0")).toBe(true)
      expect(group.topology.hasEdge("gpu0", "ap0")).toBe(false)
    })
  )

  it.effect("takes `none` and explicit edges and domains", () =>
    Effect.gen(function* () {
      const none = yield* decodeGroup({ devices: [device("gpu0"), device("gpu1")], topology: "none" })
      expect(none.topology.edgeCount).toBe(0)
      const explicit = yield* decodeGroup({
        devices: [device("nic0"), device("gpu0"), device("gpu1"), device("gpu2")],
        topology: { domains: [["gpu0", "gpu1", "gpu2"]], edges: [["nic0", "gpu0"]] }
      })
      expect(explicit.topology.edgeCount).toBe(7)
      expect(explicit.topology.targetsOf("nic0")).toEqual(["gpu0"])
      expect(explicit.topology.initiatorsOf("gpu0")).toEqual(["gpu1", "gpu2", "nic0"])
    })
  )

  const refused: ReadonlyArray<readonly [string, unknown, string]> = [
    [
      "an unknown kind",
      { devices: [device("a"), device("b"), device("c", "gpu")] },
      'devices[2].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap'
    ],
    [
      "an unknown flag",
      { devices: [device("a", "pci", ["STOP_COPY", "NDMA"])] },
      'devices[0].flags[1]: unknown flag "NDMA"; expected one of STOP_COPY, P2P, PRE_COPY'
    ],
    [
      "a flag mask out of range",
      { devices: [device("a", "pci", 9)] },
      "devices[0].flags: expected a value between 0 and 7, got 9"
    ],
    [
      "a duplicate id",
      { devices: [device("gpu0"), device("gpu1"), device("gpu0")] },
      'devices[2].id: duplicate id "gpu0", already used by devices[0]'
    ],
    [
      "a device without STOP_COPY",
      { devices: [device("gpu0"), device("gpu1", "pci", ["P2P"])] },
      'devices[1].flags: "gpu1" does not support STOP_COPY, which every migratable device needs'
    ],
    [
      "an edge to a missing device",
      { devices: [device("gpu0"), device("gpu1")], topology: { edges: [["gpu0", "gpu9"]] } },
      'topology.edges[0][1]: unknown device "gpu9"; the group has gpu0, gpu1'
    ],
    [
      "a self edge",
      { devices: [device("gpu0"), device("gpu1")], topology: { edges: [["gpu1", "gpu1"]] } },
      'topology.edges[0]: self edge on "gpu1"; an edge joins two different devices'
    ],
    [
      "an edge from an mdev",
      { devices: [device("gpu0"), device("vgpu0", "mdev")], topology: { edges: [["vgpu0", "gpu0"]] } },
      'topology.edges[0][0]: "vgpu0" is an mdev device, and mdev devices cannot access P2P pages, so it cannot be an end of an edge'
    ],
    [
      "an edge into a ccw device",
      { devices: [device("gpu0"), device("ccw0", "ccw")], topology: { edges: [["gpu0", "ccw0"]] } },
      'topology.edges[0][1]: "ccw0" is a ccw device, and s390 channel devices have no P2P, so it cannot be an end of an edge'
    ],
    [
      "an ap device in a domain",
      { devices: [device("gpu0"), device("ap0", "ap")], topology: { domains: [["gpu0", "ap0"]] } },
      'topology.domains[0][1]: "ap0" is an ap device, and s390 channel devices have no P2P, so it cannot be an end of an edge'
    ],
    [
      "a device in two domains",
      {
        devices: [device("a"), device("b"), device("c")],
        topology: {
          domains: [
            ["a", "b"],
            ["c", "a"]
          ]
        }
      },
      'topology.domains[1][1]: "a" is already in domains[0]; a device belongs to at most one P2P domain'
    ],
    [
      "an unknown topology",
      { devices: [device("a")], topology: "full-mesh" },
      'topology: unknown topology "full-mesh"; expected "shared-iommu", "none" or { "edges": [[initiator, target], …], "domains": [[id, …], …] }'
    ],
    [
      "an edge that is not a pair",
      { devices: [device("a")], topology: { edges: [["a"]] } },
      "topology.edges[0][1]: required, but missing"
    ],
    ["a missing id", { devices: [{ kind: "pci", flags: 1 }] }, "devices[0].id: required, but missing"],
    ["an empty id", { devices: [device("")] }, "devices[0].id: a device id cannot be empty"],
    ["no devices", { devices: [] }, "devices: a group needs at least one device"],
    ["devices that are not a list", { devices: { gpu0: {} } }, 'devices: expected an array, got {"gpu0":{}}'],
    ["a document that is not an object", 42, "expected an object, got 42"]
  ]

  for (const [what, doc, problem] of refused) {
    it.effect(`refuses ${what}, naming the path`, () =>
      Effect.gen(function* () {
        expect(yield* problemsOf(doc)).toEqual([problem])
      })
    )
  }

  it.effect("lists every problem at once", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf({
        devices: [device("a", "gpu"), device("b", "pci", ["STOP_COPY", "P2Q"])],
        topology: "mesh"
      })
      expect(problems.map((p) => p.split(":")[0])).toEqual(["devices[0].kind", "devices[1].flags[1]", "topology"])
      const rules = yield* problemsOf({
        devices: [device("a"), device("a"), device("v", "mdev", ["P2P"])],
        topology: { edges: [["a", "v"]] }
      })
      expect(rules.map((p) => p.split(":")[0])).toEqual(["devices[1].id", "devices[2].flags", "topology.edges[0][1]"])
    })
  )

  it.effect("reports the shape's problems and the group rules' together, not one stage after the other", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf({
        devices: [device("gpu0", "gpu"), device("gpu0"), device("nic0", "pci", ["P2P"])],
        topology: { edges: [["nic0", "gpu9"]] }
      })
      expect(problems).toEqual([
        'devices[0].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap',
        'devices[1].id: duplicate id "gpu0", already used by devices[0]',
        'devices[2].flags: "nic0" does not support STOP_COPY, which every migratable device needs',
        'topology.edges[0][1]: unknown device "gpu9"; the group has gpu0, nic0'
      ])
    })
  )

  it.effect("names the group's ids once each, never an empty one, when an edge names an unknown device", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf({
        devices: [device("gpu0"), device(""), device("gpu0")],
        topology: { edges: [["gpu0", "gpu1"]] }
      })
      expect(problems).toContain('topology.edges[0][1]: unknown device "gpu1"; the group has gpu0')
    })
  )
})

layer(NodeFileSystem.layer)("loadGroupFile", (it) => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-group-"))
  const file = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  it.effect("loads a JSON group description", () =>
    Effect.gen(function* () {
      const path = file("ok.json", JSON.stringify({ devices: [device("gpu0"), device("gpu1")] }))
      const group = yield* loadGroupFile(path)
      expect(group.devices.map((d) => d.id)).toEqual(["gpu0", "gpu1"])
    })
  )

  it.effect("fails with GroupFileUnreadable when the file is missing", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(loadGroupFile(join(dir, "missing.json")))
      expect(error.reason._tag).toBe("GroupFileUnreadable")
      expect(error.message).toBe(`${join(dir, "missing.json")}: no such group file`)
    })
  )

  it.effect("fails with GroupFileNotJson when the file is not JSON", () =>
    Effect.gen(function* () {
      const path = file("bad.json", "{ devices: [")
      const error = yield* Effect.flip(loadGroupFile(path))
      expect(error.reason._tag).toBe("GroupFileNotJson")
      expect(error.message.startsWith(`${path}: the group file is not valid JSON: `)).toBe(true)
    })
  )

  it.effect("names the file in the problems of an invalid group", () =>
    Effect.gen(function* () {
      const path = file("invalid.json", JSON.stringify({ devices: [device("gpu0", "gpu")] }))
      const error = yield* Effect.flip(loadGroupFile(path))
      expect(error.reason._tag).toBe("InvalidGroup")
      expect(error.message).toBe(`${path}: devices[0].kind: unknown kind "gpu"; expected one of pci, mdev, ccw, ap`)
    })
  )

  it.effect("decodes with the group's schema at once: a wrong type, a nested one and the rules, with paths", () =>
    Effect.gen(function* () {
      const path = file(
        "nested.json",
        JSON.stringify({
          devices: [device("gpu0"), device("gpu0", "pci", "all"), device("gpu2")],
          topology: { edges: [["gpu0", 2]] }
        })
      )
      const error = yield* Effect.flip(loadGroupFile(path))
      expect(error.reason._tag).toBe("InvalidGroup")
      const lines = error.message.split("\n")
      // Each line names the file and the path; document order: devices, then the topology
      // (within a device, its shape before the rules).
      expect(lines.map((l) => l.slice(path.length + 2).split(":")[0])).toEqual([
        "devices[1].flags",
        "devices[1].id",
        "topology.edges[0][1]"
      ])
      // Flags are a list of names or a bit mask: a string is neither.
      expect(lines[0]).toContain("a list of migration flags")
      expect(lines[0]).toContain('got "all"')
      // The rule: ids are unique, and the problem names the device that has it first.
      expect(lines[1]).toBe(`${path}: devices[1].id: duplicate id "gpu0", already used by devices[0]`)
      // An edge is a pair of device ids: the number is not one.
      expect(lines[2]).toContain("expected a string, got 2")
    })
  )
})
