import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { fixture } from "./fixtures.js"
import { runCli } from "./runCli.js"

interface JsonArc {
  readonly id: string
  readonly device: string
  readonly from: string
  readonly to: string
  readonly after: ReadonlyArray<string>
}

interface JsonPlan {
  readonly arcs: ReadonlyArray<JsonArc>
  readonly barriers: ReadonlyArray<{ readonly id: string; readonly after: ReadonlyArray<string> }>
}

const planOf = async (...args: ReadonlyArray<string>): Promise<JsonPlan> => {
  const r = await runCli("plan", ...args, "--json")
  expect(r.exitCode).toBe(0)
  expect(r.stdout.trim().split("\n")).toHaveLength(1)
  const plan = JSON.parse(r.stdout)
  expect(Object.keys(plan)).toEqual(["arcs", "barriers"])
  return plan
}

/**
 * The arcs with each `after` expanded as the README documents it: an id that names a barrier
 * stands for everything that barrier waits for, transitively.
 */
const expanded = (plan: JsonPlan): ReadonlyArray<JsonArc> => {
  const barriers = new Map(plan.barriers.map((b) => [b.id, b.after]))
  const expand = (ids: ReadonlyArray<string>): Array<string> =>
    ids.flatMap((id) => {
      const inner = barriers.get(id)
      return inner === undefined ? [id] : expand(inner)
    })
  const byNumber = (x: string, y: string) => Number(x.slice(1)) - Number(y.slice(1))
  return plan.arcs.map((a) => ({ ...a, after: [...new Set(expand(a.after))].sort(byNumber) }))
}

const planArcs = async (...args: ReadonlyArray<string>): Promise<ReadonlyArray<JsonArc>> =>
  expanded(await planOf(...args))

let dir = ""
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-plan-"))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

/** A group file of `n` PCI GPUs with P2P sharing one IOMMU (every one may write into every other). */
const sharedIommu = async (n: number): Promise<string> => {
  const file = join(dir, `shared-${n}.json`)
  const devices = Array.from({ length: n }, (_, i) => ({ id: `gpu${i}`, kind: "pci", flags: ["STOP_COPY", "P2P"] }))
  await writeFile(file, JSON.stringify({ devices, topology: "shared-iommu" }))
  return file
}

describe("lockstep plan --json", () => {
  it("prints the plan of two GPUs sharing an IOMMU: no GPU stops before both are quiesced", async () => {
    expect(await planArcs(fixture("two-gpus.json"), "--to", "STOP")).toEqual([
      { id: "a1", device: "gpu0", from: "RUNNING", to: "RUNNING_P2P", after: [] },
      { id: "a2", device: "gpu1", from: "RUNNING", to: "RUNNING_P2P", after: [] },
      // gpu1 stops after its own previous arc (a2) and after gpu0 stopped writing into it (a1).
      { id: "a3", device: "gpu0", from: "RUNNING_P2P", to: "STOP", after: ["a1", "a2"] },
      { id: "a4", device: "gpu1", from: "RUNNING_P2P", to: "STOP", after: ["a1", "a2"] }
    ])
  })

  it("expands barriers: in a clique of three every stop waits for every quiesce", async () => {
    const arcs = await planArcs(fixture("three-gpus.json"), "--to", "STOP_COPY")
    expect(arcs).toHaveLength(9)
    const quiesces = arcs.filter((a) => a.to === "RUNNING_P2P").map((a) => a.id)
    expect(quiesces).toHaveLength(3)
    for (const arc of arcs.filter((a) => a.to === "STOP")) expect(arc.after).toEqual(quiesces)
    for (const arc of arcs) {
      const previous = arcs.filter((a) => a.device === arc.device && a.to === arc.from)
      for (const p of previous) expect(arc.after).toContain(p.id)
    }
  })

  it("lists barriers once, and arcs name them in their after lists: a clique's stops wait for one join", async () => {
    const plan = await planOf(fixture("three-gpus.json"), "--to", "STOP_COPY")
    const quiesces = plan.arcs.filter((a) => a.to === "RUNNING_P2P").map((a) => a.id)
    expect(plan.barriers).toEqual([{ id: "b1", after: quiesces }])
    for (const arc of plan.arcs.filter((a) => a.to === "STOP")) expect(arc.after).toContain("b1")
  })

  it("grows linearly with the group: twice the devices, about twice the JSON", async () => {
    const small = await runCli("plan", await sharedIommu(500), "--to", "STOP_COPY", "--json")
    const large = await runCli("plan", await sharedIommu(1000), "--to", "STOP_COPY", "--json")
    expect(large.exitCode).toBe(0)
    // Quadratic output (every stop listing every quiesce) would make this ratio about 4.
    const ratio = large.stdout.length / small.stdout.length
    expect(ratio).toBeGreaterThan(1.9)
    expect(ratio).toBeLessThan(2.3)
  })

  it("plans the way up from --from: nobody runs again before every peer has left STOP", async () => {
    const arcs = await planArcs(fixture("two-gpus.json"), "--from", "resuming", "--to", "running")
    const stops = arcs.filter((a) => a.from === "STOP").map((a) => a.id)
    expect(stops).toHaveLength(2)
    for (const arc of arcs.filter((a) => a.to === "RUNNING")) for (const s of stops) expect(arc.after).toContain(s)
  })
})

describe("lockstep plan", () => {
  it("prints a readable plan by level", async () => {
    const r = await runCli("plan", fixture("two-gpus.json"), "--to", "STOP")
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("RUNNING → STOP: 4 arcs on 2 of 2 devices, 2 levels, 0 barriers")
    expect(r.stdout).toMatch(/level 2\n {2}a3 {2}gpu0 {2}RUNNING_P2P → STOP {2}after a1, a2/)
  })

  it("refuses a group that is not migratable, printing its blockers, with exit code 1", async () => {
    const r = await runCli("plan", fixture("nic-without-p2p.json"), "--to", "STOP")
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toContain("  nic0 → gpu0")
    expect(r.stderr).toContain("the group is not migratable")
  })

  it("prints the check object for a blocked group with --json", async () => {
    const r = await runCli("plan", fixture("nic-without-p2p.json"), "--to", "STOP", "--json")
    expect(r.exitCode).toBe(1)
    expect(JSON.parse(r.stdout)).toEqual({
      migratable: false,
      blockers: [{ device: "nic0", edges: [["nic0", "gpu0"]], omittedEdges: 0, reason: expect.any(String) }]
    })
  })

  it("explains a transition the kernel refuses, with exit code 1", async () => {
    const r = await runCli("plan", fixture("two-gpus.json"), "--from", "STOP_COPY", "--to", "PRE_COPY")
    expect(r.exitCode).toBe(1)
    expect(r.stdout).toBe("")
    expect(r.stderr).toContain("lockstep: cannot plan STOP_COPY → PRE_COPY: gpu0: cannot go STOP_COPY → PRE_COPY")
  })

  it("rejects an unknown state, listing the valid ones, with exit code 2", async () => {
    const r = await runCli("plan", fixture("two-gpus.json"), "--to", "STOPPED")
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('--to: unknown state "STOPPED". Valid states: ERROR, STOP, RUNNING')
  })

  it("rejects an invalid group with exit code 2", async () => {
    const r = await runCli("plan", fixture("unknown-kind.json"), "--to", "STOP")
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toContain('unknown kind "gpu"')
  })
})
