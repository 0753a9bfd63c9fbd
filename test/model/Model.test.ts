import { describe, expect, it } from "@effect/vitest"
import type { DeviceKind } from "@lockstep/device"
import type { Flags, State } from "@lockstep/fsm"
import {
  blockersOf,
  checkPlanOrders,
  directArcs,
  edgesOf,
  expectedAfterFailure,
  judgeTransition,
  kernelPath,
  type ModelDevice,
  type ModelEdge,
  requestableStates,
  validEdgesOf
} from "./Model.js"

/**
 * The reference model against cases worked by hand from DESIGN.md and the uAPI: if the model is
 * wrong, every judge built on it is, so its answers are pinned here, each from the text.
 */

const sc = 1
const p2p = 3
const pre = 5
const all = 7

const dev = (id: string, flags: Flags = all, kind: DeviceKind = "pci"): ModelDevice => ({ id, kind, flags })

const pathOf = (flags: Flags, from: State, to: State): ReadonlyArray<State> | "refused" => {
  const p = kernelPath(flags, from, to)
  return p.ok ? p.states : "refused"
}

describe("model: the single-device state machine (DESIGN.md section 1)", () => {
  it("has 6, 8, 9 and 15 direct arcs for STOP_COPY, +P2P, +PRE_COPY and all three", () => {
    expect([sc, p2p, pre, all].map((f) => directArcs(f).length)).toEqual([6, 8, 9, 15])
  })

  it("has exactly the 15 arcs DESIGN.md lists with all three flags", () => {
    const listed =
      "RUNNING→RUNNING_P2P, RUNNING→PRE_COPY, RUNNING_P2P→STOP, RUNNING_P2P→RUNNING, RUNNING_P2P→PRE_COPY_P2P, STOP→RUNNING_P2P, STOP→STOP_COPY, STOP→RESUMING, STOP_COPY→STOP, RESUMING→STOP, PRE_COPY→RUNNING, PRE_COPY→PRE_COPY_P2P, PRE_COPY_P2P→PRE_COPY, PRE_COPY_P2P→RUNNING_P2P, PRE_COPY_P2P→STOP_COPY"
    expect(
      directArcs(all)
        .map((a) => `${a.from}→${a.to}`)
        .sort()
    ).toEqual(listed.split(", ").sort())
  })

  it("without P2P: RUNNING ↔ STOP and PRE_COPY → STOP_COPY are direct, and no P2P state exists", () => {
    const arcs = directArcs(pre).map((a) => `${a.from}→${a.to}`)
    expect(arcs).toEqual(expect.arrayContaining(["RUNNING→STOP", "STOP→RUNNING", "PRE_COPY→STOP_COPY"]))
    expect(arcs.some((a) => a.includes("P2P"))).toBe(false)
    expect(pathOf(sc, "RUNNING", "STOP_COPY")).toEqual(["RUNNING", "STOP", "STOP_COPY"])
    expect(pathOf(sc, "RUNNING", "RUNNING_P2P")).toBe("refused")
  })

  it("walks DESIGN.md's three examples of combination transitions", () => {
    expect(pathOf(all, "RUNNING", "STOP_COPY")).toEqual(["RUNNING", "RUNNING_P2P", "STOP", "STOP_COPY"])
    expect(pathOf(all, "PRE_COPY", "STOP")).toEqual(["PRE_COPY", "RUNNING", "RUNNING_P2P", "STOP"])
    expect(pathOf(all, "RESUMING", "PRE_COPY")).toEqual(["RESUMING", "STOP", "RUNNING_P2P", "RUNNING", "PRE_COPY"])
  })

  it("refuses ERROR as a request and as a start, and STOP_COPY → PRE_COPY / PRE_COPY_P2P, cleanly", () => {
    expect(pathOf(all, "RUNNING", "ERROR")).toBe("refused")
    expect(pathOf(all, "ERROR", "RUNNING")).toBe("refused")
    expect(pathOf(all, "ERROR", "ERROR")).toBe("refused")
    expect(pathOf(all, "STOP_COPY", "PRE_COPY")).toBe("refused")
    expect(pathOf(all, "STOP_COPY", "PRE_COPY_P2P")).toBe("refused")
    expect(pathOf(p2p, "RUNNING", "PRE_COPY")).toBe("refused")
  })

  it("answers the current state with a no-op", () => {
    for (const s of requestableStates) expect(pathOf(all, s, s)).toEqual([s])
  })

  it("never has a saving-group state inside a path, unless the path starts and ends in the group", () => {
    const saving = (s: State) => s === "PRE_COPY" || s === "PRE_COPY_P2P" || s === "STOP_COPY"
    for (const flags of [sc, p2p, pre, all])
      for (const from of requestableStates)
        for (const to of requestableStates) {
          const p = kernelPath(flags, from, to)
          if (!p.ok) continue
          const inside = saving(from) && saving(to)
          for (const s of p.states.slice(1, -1)) expect(inside || !saving(s), `${from} → ${to}`).toBe(true)
        }
    expect(pathOf(all, "PRE_COPY", "STOP_COPY")).toEqual(["PRE_COPY", "PRE_COPY_P2P", "STOP_COPY"])
  })
})

describe("model: the edges of a group (DESIGN.md section 2)", () => {
  const mixed = [dev("gpu0"), dev("gpu1"), dev("vgpu0", all, "mdev"), dev("ccw0", p2p, "ccw"), dev("nic0", sc)]

  it("shared-iommu: every pci device into every other pci device, never an mdev or s390 device", () => {
    expect(validEdgesOf(mixed, "shared-iommu")).toEqual([
      ["gpu0", "gpu1"],
      ["gpu0", "nic0"],
      ["gpu1", "gpu0"],
      ["gpu1", "nic0"],
      ["nic0", "gpu0"],
      ["nic0", "gpu1"]
    ])
  })

  it("none: no edges; explicit: the edges and each domain's clique, once each", () => {
    expect(validEdgesOf(mixed, "none")).toEqual([])
    expect(
      validEdgesOf(mixed, {
        edges: [
          ["nic0", "gpu0"],
          ["gpu0", "gpu1"]
        ],
        domains: [["gpu0", "gpu1"]]
      })
    ).toEqual([
      ["gpu0", "gpu1"],
      ["gpu1", "gpu0"],
      ["nic0", "gpu0"]
    ])
  })

  it("refuses an explicit edge touching an mdev or s390 device, a self edge, and a device in two domains", () => {
    expect(edgesOf(mixed, { edges: [["gpu0", "vgpu0"]] }).ok).toBe(false)
    expect(edgesOf(mixed, { edges: [["ccw0", "gpu0"]] }).ok).toBe(false)
    expect(edgesOf(mixed, { edges: [["gpu0", "gpu0"]] }).ok).toBe(false)
    expect(
      edgesOf(mixed, {
        domains: [
          ["gpu0", "gpu1"],
          ["gpu1", "nic0"]
        ]
      }).ok
    ).toBe(false)
  })

  it("blocks exactly the devices that write into someone without P2P (README's table against QEMU)", () => {
    const blocked = (devices: ReadonlyArray<ModelDevice>, topology: Parameters<typeof edgesOf>[1]) =>
      blockersOf(devices, validEdgesOf(devices, topology))
    expect(blocked([dev("gpu0"), dev("gpu1")], "shared-iommu")).toEqual([])
    expect(blocked([dev("gpu0"), dev("ccw0", sc, "ccw")], "shared-iommu")).toEqual([])
    expect(blocked([dev("gpu0", sc), dev("gpu1", sc)], "none")).toEqual([])
    expect(blocked([dev("gpu0", sc), dev("gpu1", sc)], "shared-iommu")).toEqual(["gpu0", "gpu1"])
    expect(blocked([dev("gpu0"), dev("gpu1", sc)], { edges: [["gpu0", "gpu1"]] })).toEqual([])
    expect(
      blocked([dev("nic0", sc), dev("gpu0"), dev("gpu1")], {
        edges: [
          ["nic0", "gpu0"],
          ["nic0", "gpu1"]
        ]
      })
    ).toEqual(["nic0"])
  })
})

describe("model: whether a group transition must be possible", () => {
  const twoGpus = [dev("gpu0"), dev("gpu1")]
  const clique: ReadonlyArray<ModelEdge> = [
    ["gpu0", "gpu1"],
    ["gpu1", "gpu0"]
  ]

  it("GPUs with P2P reach STOP_COPY: everyone quiesces before anyone halts", () => {
    const v = judgeTransition(twoGpus, clique, "RUNNING", "STOP_COPY")
    expect(v.possible).toBe(true)
    if (v.possible) expect(v.target).toEqual({ gpu0: "STOP_COPY", gpu1: "STOP_COPY" })
  })

  it("two GPUs without P2P that write into each other cannot stop: each must wait for the other", () => {
    const v = judgeTransition([dev("gpu0", sc), dev("gpu1", sc)], clique, "RUNNING", "STOP")
    expect(v).toMatchObject({ possible: false, why: { _tag: "NoSafeOrder" } })
  })

  it("a NIC without P2P writing into a GPU stops first (RUNNING → STOP directly), then the GPU", () => {
    const v = judgeTransition([dev("nic0", sc), dev("gpu0")], [["nic0", "gpu0"]], "RUNNING", "STOP")
    expect(v.possible).toBe(true)
    if (v.possible) expect(v.order[0]).toBe("nic0")
  })

  it("a device that only receives writes needs no P2P, and a device without edges waits for nobody", () => {
    expect(judgeTransition([dev("gpu0"), dev("gpu1", sc)], [["gpu0", "gpu1"]], "RUNNING", "STOP").possible).toBe(true)
    expect(judgeTransition([dev("gpu0", sc), dev("gpu1", sc)], [], "RUNNING", "STOP_COPY").possible).toBe(true)
  })

  it("refuses when an edge is unsafe before anything moves, or would be once everyone arrived", () => {
    expect(judgeTransition(twoGpus, clique, { gpu0: "RUNNING", gpu1: "STOP" }, "STOP")).toMatchObject({
      possible: false,
      why: { _tag: "UnsafeStart" }
    })
    expect(judgeTransition(twoGpus, clique, "RUNNING", { gpu1: "STOP" })).toMatchObject({
      possible: false,
      why: { _tag: "UnsafeEnd", edge: ["gpu0", "gpu1"] }
    })
  })

  it("refuses what the kernel refuses for one device, and lets a device in ERROR that is asked for nothing stay", () => {
    expect(judgeTransition(twoGpus, clique, "STOP_COPY", "PRE_COPY")).toMatchObject({
      possible: false,
      why: { _tag: "KernelRefuses" }
    })
    const quarantined = judgeTransition(twoGpus, clique, { gpu0: "ERROR", gpu1: "RUNNING" }, { gpu1: "RUNNING_P2P" })
    expect(quarantined.possible).toBe(true)
    expect(judgeTransition(twoGpus, clique, { gpu0: "ERROR" }, { gpu1: "STOP" }).possible).toBe(false)
  })

  it("a destination resumes: RESUMING → STOP → quiesced → RUNNING, nobody running while a peer is halted", () => {
    const v = judgeTransition(twoGpus, clique, "RESUMING", "RUNNING")
    expect(v.possible).toBe(true)
    if (v.possible) expect(v.paths.gpu0).toEqual(["RESUMING", "STOP", "RUNNING_P2P", "RUNNING"])
  })
})

describe("model: where a failed transition leaves every device", () => {
  const three = [dev("a"), dev("b"), dev("c")]
  const oneWay: ReadonlyArray<ModelEdge> = [
    ["a", "b"],
    ["c", "a"]
  ]

  it("reset: a device found in ERROR ends in RUNNING, the others where they started", () => {
    const after = expectedAfterFailure(
      three,
      oneWay,
      { a: "RUNNING", b: "RUNNING", c: "RUNNING" },
      { a: "ERROR", b: "STOP", c: "RUNNING_P2P" },
      "reset"
    )
    expect(after).toEqual({ a: "RUNNING", b: "RUNNING", c: "RUNNING" })
  })

  it("quarantine on a destination: the device in ERROR stays, its targets that started halted are reset, the rest go back", () => {
    // a → b, c → a: a may write into b, so b (started RESUMING) is kept out of the halted states;
    // c writes into a, not the other way, so c goes back to RESUMING.
    const after = expectedAfterFailure(
      three,
      oneWay,
      { a: "RESUMING", b: "RESUMING", c: "RESUMING" },
      { a: "ERROR", b: "STOP", c: "RUNNING_P2P" },
      "quarantine"
    )
    expect(after).toEqual({ a: "ERROR", b: "RUNNING", c: "RESUMING" })
  })

  it("a device that reached STOP_COPY from pre-copy falls back to the same class without the saving session", () => {
    const after = expectedAfterFailure(
      [dev("a"), dev("b")],
      [],
      { a: "PRE_COPY", b: "PRE_COPY_P2P" },
      { a: "STOP_COPY", b: "STOP_COPY" },
      "reset"
    )
    expect(after).toEqual({ a: "RUNNING", b: "RUNNING_P2P" })
  })

  it("a device caught in RESUMING goes back to where it started (through a reset)", () => {
    const after = expectedAfterFailure([dev("a")], [], { a: "STOP" }, { a: "RESUMING" }, "reset")
    expect(after).toEqual({ a: "STOP" })
  })
})

describe("model: every order a plan allows", () => {
  const twoGpus = [dev("gpu0"), dev("gpu1")]
  const clique: ReadonlyArray<ModelEdge> = [
    ["gpu0", "gpu1"],
    ["gpu1", "gpu0"]
  ]
  const arc = (id: string, device: string, from: State, to: State, after: ReadonlyArray<string>) => ({
    id,
    device,
    from,
    to,
    after
  })

  it("finds the order that halts a target while its initiator still runs, when the plan lets it", () => {
    // Each GPU quiesces then stops, waiting for nobody else: gpu0 may stop while gpu1 still runs.
    const unordered = {
      arcs: [
        arc("a1", "gpu0", "RUNNING", "RUNNING_P2P", []),
        arc("a2", "gpu1", "RUNNING", "RUNNING_P2P", []),
        arc("a3", "gpu0", "RUNNING_P2P", "STOP", ["a1"]),
        arc("a4", "gpu1", "RUNNING_P2P", "STOP", ["a2"])
      ],
      barriers: []
    }
    const checked = checkPlanOrders(
      { devices: twoGpus, edges: clique },
      { gpu0: "RUNNING", gpu1: "RUNNING" },
      unordered
    )
    expect(checked.unsafe).toBeDefined()
  })

  it("proves the plan whose stops wait, through a barrier, for every quiesce", () => {
    const ordered = {
      arcs: [
        arc("a1", "gpu0", "RUNNING", "RUNNING_P2P", []),
        arc("a2", "gpu1", "RUNNING", "RUNNING_P2P", []),
        arc("a3", "gpu0", "RUNNING_P2P", "STOP", ["a1", "b1"]),
        arc("a4", "gpu1", "RUNNING_P2P", "STOP", ["a2", "b1"])
      ],
      barriers: [{ id: "b1", after: ["a1", "a2"] }]
    }
    const checked = checkPlanOrders({ devices: twoGpus, edges: clique }, { gpu0: "RUNNING", gpu1: "RUNNING" }, ordered)
    expect(checked.unsafe).toBeUndefined()
    // The quiesces in any of 3 × 3 states (waiting, in flight, done) with the stops waiting; then,
    // both quiesced, the stops in 3 × 3 states less the one already counted: 9 + 8.
    expect(checked.configurations).toBe(17)
  })
})
