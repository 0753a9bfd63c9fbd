import { describe, expect, it } from "@effect/vitest"
import { type FleetTimelineInput, renderFleetTimelineSvg } from "../src/index.js"
import { byClass, parseXml, textOf, type XmlElement } from "./Xml.js"

const attr = (e: XmlElement | undefined, name: string): string => e?.attributes[name] ?? ""

const input: FleetTimelineInput = {
  title: "Evacuation of <host-a> & co",
  start: 1_000,
  end: 11_000,
  lanes: [
    {
      vm: "vm01",
      detail: "→ host-b",
      outcome: "migrated",
      phases: [
        { phase: "handshake", attempt: 1, from: 1_000, to: 1_500 },
        { phase: "precopy", attempt: 1, from: 1_500, to: 3_000 },
        { phase: "recover", attempt: 2, from: 4_000, to: 4_200 },
        { phase: "switchover", attempt: 2, from: 5_000, to: 5_100 },
        { phase: "resume", attempt: 2, from: 5_100, to: 6_000 }
      ],
      downtime: { from: 5_000, to: 6_000 }
    },
    { vm: "vm02", detail: "→ host-c", outcome: "rolled-back", phases: [{ phase: "precopy", attempt: 1, from: 2_000 }] }
  ]
}

describe("renderFleetTimelineSvg", () => {
  it("draws a lane per VM in order, its phases where their times fall, its downtime, its outcome", () => {
    const source = renderFleetTimelineSvg(input, { width: 1200 })
    const svg = parseXml(source)
    expect(svg.name).toBe("svg")
    expect(source).not.toMatch(/<script|<image|href="http/)
    expect(source).toContain("Evacuation of &lt;host-a&gt; &amp; co")
    const lanes = byClass(svg, "lane")
    expect(lanes.map((l) => attr(l, "data-vm"))).toEqual(["vm01", "vm02"])
    expect(byClass(svg, "outcome").map(textOf)).toEqual(["migrated", "rolled-back"])
    const [first, second] = lanes
    if (first === undefined || second === undefined) return expect.fail("lanes")
    const phases = byClass(first, "phase")
    expect(phases.map((p) => `${attr(p, "data-phase")}#${attr(p, "data-attempt")}`)).toEqual([
      "handshake#1",
      "precopy#1",
      "recover#2",
      "switchover#2",
      "resume#2"
    ])
    // The axis is linear here: x grows with time at one scale, so durations keep their ratios.
    const x = (p: XmlElement) => Number(attr(p, "x"))
    const w = (p: XmlElement) => Number(attr(p, "width"))
    const [handshake, precopy] = phases
    if (handshake === undefined || precopy === undefined) return expect.fail("phases")
    expect(w(precopy) / w(handshake)).toBeCloseTo(1_500 / 500, 1)
    expect(x(precopy)).toBeCloseTo(x(handshake) + w(handshake), 1)
    const [downtime] = byClass(first, "downtime")
    if (downtime === undefined) return expect.fail("downtime")
    const switchover = phases[3]
    if (switchover === undefined) return expect.fail("switchover")
    expect(x(downtime)).toBeCloseTo(x(switchover), 1)
    expect(w(downtime) / w(precopy)).toBeCloseTo(1_000 / 1_500, 1)
    // A phase that never ended (a crash cut it short) runs to the end, drawn faint.
    const [cut] = byClass(second, "phase")
    expect(attr(cut, "opacity")).toBe("0.5")
    expect(byClass(second, "downtime")).toEqual([])
  })
})
