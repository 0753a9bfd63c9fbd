import { describe, expect, it } from "vitest"
import { parseArcs } from "./KernelLog.ts"
import { p2pBreaches } from "./P2POrder.ts"

/* The kernel suite's judge of P2P ordering, checked on logs written by hand from the rule. */

const a = "6c6f636b-7374-4570-8000-000000000001"
const b = "6c6f636b-7374-4570-8000-000000000002"
const log = (lines: ReadonlyArray<readonly [string, number, number]>) =>
  parseArcs(
    lines
      .map(([d, from, to], i) => `[   ${i}.000000] mtty ${d}: mtty_step_state: ${from} -> ${to}`)
      .join("\nunrelated line\n")
  )

describe("P2P ordering over the kernel log", () => {
  it("parses mtty's lines into states by their uAPI numbers", () => {
    expect(log([[a, 2, 5]])).toEqual([{ device: a, from: "RUNNING", to: "RUNNING_P2P" }])
  })

  it("accepts the quiesce-then-halt order for an edge a → b", () => {
    const arcs = log([
      [a, 2, 5],
      [b, 2, 5],
      [b, 5, 1],
      [a, 5, 1]
    ])
    expect(p2pBreaches({ [a]: "RUNNING", [b]: "RUNNING" }, [[a, b]], arcs)).toEqual([])
  })

  it("catches a target halted while its initiator still runs", () => {
    const arcs = log([
      [b, 2, 5],
      [b, 5, 1],
      [a, 2, 5]
    ])
    const breaches = p2pBreaches({ [a]: "RUNNING", [b]: "RUNNING" }, [[a, b]], arcs)
    expect(breaches.map((x) => x.at)).toEqual([1, 2])
  })

  it("counts an arc in flight in both ends: an initiator leaving RUNNING_P2P for RUNNING breaks the rule at once", () => {
    const arcs = log([
      [a, 5, 2],
      [b, 1, 5]
    ])
    const breaches = p2pBreaches({ [a]: "RUNNING_P2P", [b]: "STOP" }, [[a, b]], arcs)
    expect(breaches.map((x) => x.at)).toEqual([0, 1])
  })

  it("ignores devices with no edge between them", () => {
    const arcs = log([
      [b, 2, 5],
      [b, 5, 1]
    ])
    expect(p2pBreaches({ [a]: "RUNNING", [b]: "RUNNING" }, [[b, a]], arcs)).toEqual([])
  })
})
