import { describe, expect, it } from "@effect/vitest"
import { transition } from "@lockstep/coordinator"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { makeTimelineRecorder, renderTimelineSvg, type TimelineInput } from "../src/index.js"
import { gpuClusterDoc, keep, recordMigration, recordPlantedBug, simulate } from "./runs.js"
import { byClass, elements, parseXml, textOf, type XmlElement } from "./Xml.js"

const attr = (e: XmlElement | undefined, name: string): string => e?.attributes[name] ?? ""
const num = (e: XmlElement | undefined, name: string): number => Number(attr(e, name))
const laneIds = (svg: XmlElement) => byClass(svg, "lane").map((g) => attr(g, "data-device"))
const legendKeys = (svg: XmlElement) => byClass(svg, "legend-item").map((g) => attr(g, "data-item"))

describe("renderTimelineSvg: a real run", () => {
  it.effect("8 GPUs all-to-all and a NIC, through PRE_COPY and the switchover to STOP_COPY", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      const source = renderTimelineSvg(input)
      keep("migration.svg", source)
      keep("migration.json", input)
      const svg = parseXml(source)
      expect(svg.name).toBe("svg")
      expect(attr(svg, "xmlns")).toBe("http://www.w3.org/2000/svg")
      expect(attr(svg, "font-family")).toBe("sans-serif")
      // Standalone: nothing is fetched from outside the document.
      expect(source).not.toMatch(/<script|<image|@import|href="http|xlink:href/)
      expect(laneIds(svg)).toEqual(input.devices.map((d) => d.id))
      expect(byClass(svg, "lane-label").map(textOf)).toEqual(input.devices.map((d) => `${d.id} (pci)${d.id}`))
      // Every state and arc the recorder saw is drawn, on its lane.
      const states = input.entries.filter((e) => e._tag === "StateSpan")
      expect(byClass(svg, "state").length).toBe(states.length)
      expect(byClass(svg, "arc").length).toBe(input.entries.filter((e) => e._tag === "ArcSpan").length)
      expect(new Set(byClass(svg, "state").map((g) => attr(g, "data-state")))).toEqual(
        new Set(["PRE_COPY", "PRE_COPY_P2P", "STOP_COPY"])
      )
      expect(byClass(svg, "wait").length).toBe(input.entries.filter((e) => e._tag === "Wait").length)
      expect(byClass(svg, "connector").length).toBeGreaterThan(0)
      const phases = byClass(svg, "phase")
      expect(phases.map((p) => attr(p, "data-emphasis"))).toEqual(["normal", "normal", "downtime"])
      expect(textOf(svg)).toContain("switchover (downtime")
      expect(byClass(svg, "violation")).toEqual([])
      expect(legendKeys(svg)).toEqual(
        expect.arrayContaining(["initiating", "quiesced", "halted", "error", "arc", "wait", "downtime", "no-violation"])
      )
      // State names are written inside the bars that have room for them.
      const written = byClass(svg, "state").filter((g) =>
        g.children.some((c) => typeof c !== "string" && c.name === "text")
      )
      expect(written.length).toBeGreaterThan(input.devices.length)
    })
  )

  it.effect("violations are red markers on the target's lane, with a legend entry", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordPlantedBug(sim)
      const source = renderTimelineSvg(input)
      keep("violations.svg", source)
      const svg = parseXml(source)
      const violations = input.entries.filter((e) => e._tag === "Violation")
      const drawn = byClass(svg, "violation")
      expect(drawn.length).toBe(violations.length)
      expect(drawn.map((g) => `${attr(g, "data-initiator")} → ${attr(g, "data-target")}`)).toEqual(
        violations.map((v) => `${v.initiator} → ${v.target}`)
      )
      const lanes = byClass(svg, "lane")
      for (const g of drawn) {
        const lane = lanes.find((l) => attr(l, "data-device") === attr(g, "data-target"))
        const laneRect = lane?.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect")
        const band = g.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect")
        expect(attr(band, "fill")).toBe("#d62728")
        expect(num(band, "y")).toBeGreaterThanOrEqual(num(laneRect, "y"))
        expect(num(band, "y") + num(band, "height")).toBeLessThanOrEqual(num(laneRect, "y") + num(laneRect, "height"))
        expect(num(band, "width")).toBeGreaterThanOrEqual(3)
      }
      expect(legendKeys(svg)).toContain("violation")
      expect(legendKeys(svg)).not.toContain("no-violation")
    })
  )

  it.effect("a failed arc, the reset and the rollback", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(
        gpuClusterDoc({ gpu3: [{ _tag: "FailArc", from: "PRE_COPY_P2P", to: "STOP_COPY", leaveIn: "error" }] })
      )
      const recorder = makeTimelineRecorder({ devices: sim.group.devices, title: "gpu3 fails into ERROR" })
      yield* runOnVirtualTime(transition(sim, "PRE_COPY", { onEvent: recorder.onEvent }))
      yield* Effect.flip(runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent })))
      yield* sim.fabric.settle
      recorder.addViolations(sim.fabric.violations(), sim.fabric.corruptingWrites())
      const input = recorder.toInput()
      const source = renderTimelineSvg(input)
      keep("rollback.svg", source)
      const svg = parseXml(source)
      const failed = byClass(svg, "arc").filter((g) => attr(g, "data-outcome") === "failed")
      expect(failed.map((g) => attr(g, "data-device"))).toEqual(["gpu3"])
      expect(byClass(failed[0] ?? svg, "failure").length).toBe(1)
      expect(byClass(svg, "reset").map((g) => attr(g, "data-device"))).toEqual(["gpu3"])
      expect(byClass(svg, "rollback").map((g) => attr(g, "data-ok"))).toEqual(["true"])
      expect(textOf(svg)).toContain("rollback")
      expect(legendKeys(svg)).toEqual(expect.arrayContaining(["failure", "reset", "rollback"]))
    })
  )
})

describe("renderTimelineSvg: scale", () => {
  it.effect("64 devices: one lane each, lanes shrink, the picture stays a sensible size", () =>
    Effect.gen(function* () {
      const devices = Array.from({ length: 64 }, (_, i) => ({
        id: `gpu${i}`,
        kind: "pci",
        flags: ["STOP_COPY", "P2P", "PRE_COPY"],
        sim: { arcLatencyMs: 1 + (i % 5), arcLatenciesMs: { "RUNNING>RUNNING_P2P": 1 + ((i * 7) % 11) } }
      }))
      const sim = yield* simulate({ devices })
      const recorder = makeTimelineRecorder({ devices: sim.group.devices, title: "64 GPUs, shared IOMMU" })
      yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent }))
      yield* sim.fabric.settle
      recorder.addViolations(sim.fabric.violations())
      const source = renderTimelineSvg(recorder.toInput())
      keep("64.svg", source)
      const svg = parseXml(source)
      expect(laneIds(svg)).toEqual(devices.map((d) => d.id))
      const laneRects = byClass(svg, "lane").map((g) =>
        g.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect")
      )
      expect(laneRects.every((r) => num(r, "height") === 12)).toBe(true)
      expect(num(svg, "height")).toBeLessThan(1100)
      // Waits for the slowest quiesce are drawn; every lane label is there.
      expect(byClass(svg, "wait").length).toBeGreaterThan(32)
      expect(byClass(svg, "lane-label").length).toBe(64)
    })
  )

  it.effect("two devices get tall lanes", () =>
    Effect.gen(function* () {
      const sim = yield* simulate({
        devices: [
          { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"] },
          { id: "nvme0", kind: "pci", flags: ["STOP_COPY"] }
        ],
        topology: { edges: [["gpu0", "nvme0"]] }
      })
      const recorder = makeTimelineRecorder({ devices: sim.group.devices })
      yield* runOnVirtualTime(transition(sim, "STOP_COPY", { onEvent: recorder.onEvent }))
      const source = renderTimelineSvg(recorder.toInput())
      keep("two.svg", source)
      const svg = parseXml(source)
      expect(laneIds(svg)).toEqual(["gpu0", "nvme0"])
      const laneRect = byClass(svg, "lane")[0]?.children.find(
        (c): c is XmlElement => typeof c !== "string" && c.name === "rect"
      )
      expect(num(laneRect, "height")).toBe(40)
      // nvme0 (no P2P) goes RUNNING → STOP in one arc, after gpu0 has quiesced.
      expect(byClass(svg, "wait").map((g) => attr(g, "data-device"))).toEqual(["nvme0"])
    })
  )

  it.effect("a long pre-copy is compressed so the arcs stay visible, and only when asked", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim, [4000, 3000, 2500])
      const source = renderTimelineSvg(input)
      keep("long.svg", source)
      keep("long.json", input)
      const svg = parseXml(source)
      expect(byClass(svg, "break").length).toBeGreaterThan(0)
      const arcWidths = byClass(svg, "arc").map((g) =>
        num(
          g.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect"),
          "width"
        )
      )
      expect(Math.min(...arcWidths)).toBeGreaterThanOrEqual(4)
      expect(textOf(svg)).toContain("pre-copy round 3")
      const linear = parseXml(renderTimelineSvg(input, { compressTime: false }))
      expect(byClass(linear, "break")).toEqual([])
    })
  )
})

describe("renderTimelineSvg: any input", () => {
  const hostile = "<gpu&\"0'>"
  const input: TimelineInput = {
    title: "</svg><script>alert(1)</script>",
    devices: [
      { id: hostile, kind: "p&ci", initial: "RUNNING" },
      { id: "nic]]>", kind: "pci", initial: "UNKNOWN" }
    ],
    entries: [
      { _tag: "StateSpan", device: hostile, state: "RUNNING", from: 0, to: 5 },
      {
        _tag: "ArcSpan",
        device: hostile,
        id: "a1",
        arc: { from: "RUNNING", to: "STOP" },
        from: 5,
        to: 7,
        outcome: "failed",
        error: "EIO <&>"
      },
      { _tag: "Phase", label: 'switchover <downtime> & "more"', from: 2, to: 9, emphasis: "downtime" },
      { _tag: "Mark", at: 3, label: "ack \u0007 <now>" },
      { _tag: "Mark", at: 4, label: "device mark", device: "ghost" },
      { _tag: "Violation", initiator: "nic]]>", target: hostile, from: 6, description: "a & b < c" },
      { _tag: "StateSpan", device: "nic]]>", state: "ERROR", from: Number.NaN, to: 3 }
    ]
  }

  it("escapes every piece of text and draws lanes for devices only entries name", () => {
    const source = renderTimelineSvg(input)
    keep("escaping.svg", source)
    const svg = parseXml(source)
    expect(source).not.toContain("<script")
    expect(laneIds(svg)).toEqual([hostile, "nic]]>", "ghost"])
    expect(textOf(svg)).toContain("</svg><script>alert(1)</script>")
    expect(textOf(svg)).toContain('switchover <downtime> & "more"')
    expect(textOf(svg)).toContain("ack  <now>")
    expect(byClass(svg, "violation").map((g) => attr(g, "data-target"))).toEqual([hostile])
    // An entry with a time that is not a number is left out, not drawn at NaN.
    expect(source).not.toContain("NaN")
    expect(elements(svg).some((e) => Object.values(e.attributes).some((v) => v.includes("Infinity")))).toBe(false)
  })

  it("an empty timeline is still a valid picture", () => {
    const svg = parseXml(renderTimelineSvg({ devices: [], entries: [] }))
    expect(svg.name).toBe("svg")
    expect(byClass(svg, "lane")).toEqual([])
    const one = parseXml(renderTimelineSvg({ devices: [{ id: "gpu0", kind: "pci", initial: "RUNNING" }], entries: [] }))
    expect(laneIds(one)).toEqual(["gpu0"])
  })

  it("the XML reader is strict", () => {
    expect(() => parseXml("<a><b></a></b>")).toThrow(/closes/)
    expect(() => parseXml("<a x=1/>")).toThrow(/quoted/)
    expect(() => parseXml("<a>&nbsp;</a>")).toThrow(/entity/)
    expect(() => parseXml("<a>x < y</a>")).toThrow()
    expect(() => parseXml('<a x="1" x="2"/>')).toThrow(/duplicate/)
    expect(() => parseXml("<a/><b/>")).toThrow(/after the root/)
    expect(() => parseXml("<a>")).toThrow(/never closed/)
    expect(parseXml('<?xml version="1.0"?>\n<a q="&lt;&#65;"><!-- c --><b/>t&amp;</a>\n')).toEqual({
      name: "a",
      attributes: { q: "<A" },
      children: [{ name: "b", attributes: {}, children: [] }, "t&"]
    })
  })
})
