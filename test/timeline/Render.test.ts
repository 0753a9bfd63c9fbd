import { describe, expect, it } from "@effect/vitest"
import { transition } from "@lockstep/coordinator"
import { runOnVirtualTime } from "@lockstep/sim"
import { makeTimelineRecorder, p2pOf, renderTimelineSvg, type TimelineInput } from "@lockstep/timeline"
import { Effect } from "effect"
import { byClass, elements, parseXml, textOf, type XmlElement } from "../../packages/timeline/test/Xml.js"
import {
  gpuClusterDoc,
  keep,
  record64Devices,
  recordMigration,
  recordPlantedBug,
  recordRollback,
  recordTwoDevices,
  simulate
} from "./runs.js"

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
      expect(byClass(svg, "release").length).toBeGreaterThan(0)
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
      const input = yield* recordRollback
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

/** Each lane's band `[top, bottom]`, by device. */
const laneBands = (svg: XmlElement): ReadonlyMap<string, { readonly top: number; readonly bottom: number }> =>
  new Map(
    byClass(svg, "lane").map((g) => {
      const rect = g.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect")
      return [attr(g, "data-device"), { top: num(rect, "y"), bottom: num(rect, "y") + num(rect, "height") }]
    })
  )

/** The vertical extent of every drawn shape in `g` (lines, paths, circles, rects, text). */
const verticalExtents = (g: XmlElement): Array<{ readonly lo: number; readonly hi: number }> =>
  elements(g).flatMap((e) => {
    switch (e.name) {
      case "line":
        return [{ lo: Math.min(num(e, "y1"), num(e, "y2")), hi: Math.max(num(e, "y1"), num(e, "y2")) }]
      case "rect":
        return [{ lo: num(e, "y"), hi: num(e, "y") + num(e, "height") }]
      case "circle":
        return [{ lo: num(e, "cy") - num(e, "r"), hi: num(e, "cy") + num(e, "r") }]
      case "text":
        return [{ lo: num(e, "y") - num(e, "font-size"), hi: num(e, "y") }]
      case "path": {
        const ys = [...attr(e, "d").matchAll(/-?[\d.]+,(-?[\d.]+)/g)].map((m) => Number(m[1]))
        return [{ lo: Math.min(...ys), hi: Math.max(...ys) }]
      }
      default:
        return []
    }
  })

describe("renderTimelineSvg: who waits for whom, quiesced states, the P2P topology", () => {
  it.effect("draws every wait on its own lane, and a release line only through the lanes it released", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      const svg = parseXml(renderTimelineSvg(input))
      const bands = laneBands(svg)
      const waits = byClass(svg, "wait")
      expect(waits.length).toBeGreaterThan(0)
      for (const w of waits) {
        const band = bands.get(attr(w, "data-device"))
        for (const extent of verticalExtents(w)) {
          expect(extent.lo).toBeGreaterThanOrEqual(band?.top ?? Number.NaN)
          expect(extent.hi).toBeLessThanOrEqual(band?.bottom ?? Number.NaN)
        }
      }
      // Every line of a release lies within the lanes of the releaser and the devices it released.
      const releases = byClass(svg, "release")
      expect(releases.length).toBeGreaterThan(0)
      for (const r of releases) {
        const involved = [attr(r, "data-device"), ...attr(r, "data-released").split(" ")]
        const inside = (y: number) =>
          involved.some((d) => {
            const band = bands.get(d)
            return band !== undefined && y >= band.top && y <= band.bottom
          })
        for (const line of elements(r).filter((e) => e.name === "line"))
          for (let y = num(line, "y1"); y <= num(line, "y2"); y += 1) expect(inside(y), `${y}`).toBe(true)
      }
      // And each waiting device is named on the release that freed it, as in the recorder's input.
      const expected = input.entries.flatMap((e) =>
        e._tag === "Wait" && e.waitedFor !== undefined ? [`${e.waitedFor.device} → ${e.device}`] : []
      )
      const drawn = releases.flatMap((r) =>
        attr(r, "data-released")
          .split(" ")
          .map((d) => `${attr(r, "data-device")} → ${d}`)
      )
      expect(new Set(drawn)).toEqual(new Set(expected))
    })
  )

  it("writes the device waited for on a wait when there is room", () => {
    const svg = parseXml(
      renderTimelineSvg({
        devices: [
          { id: "nic0", kind: "pci", initial: "RUNNING" },
          { id: "gpu0", kind: "pci", initial: "RUNNING" }
        ],
        entries: [
          {
            _tag: "ArcSpan",
            device: "nic0",
            id: "a1",
            arc: { from: "RUNNING", to: "RUNNING_P2P" },
            from: 0,
            to: 20,
            outcome: "done"
          },
          { _tag: "StateSpan", device: "gpu0", state: "RUNNING", from: 0, to: 1 },
          {
            _tag: "Wait",
            device: "gpu0",
            id: "a2",
            from: 1,
            to: 20,
            waitedFor: { device: "nic0", id: "a1", arc: { from: "RUNNING", to: "RUNNING_P2P" }, at: 20 }
          },
          {
            _tag: "ArcSpan",
            device: "gpu0",
            id: "a2",
            arc: { from: "RUNNING", to: "STOP" },
            from: 20,
            to: 22,
            outcome: "done"
          }
        ]
      })
    )
    expect(byClass(svg, "wait-label").map(textOf)).toEqual(["for nic0"])
    expect(byClass(svg, "connector")).toEqual([])
  })

  it.effect("names every quiesced state whose bar has room for its short name", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const input = yield* recordMigration(sim)
      const svg = parseXml(renderTimelineSvg(input))
      const quiesced = byClass(svg, "state").filter((g) =>
        ["RUNNING_P2P", "PRE_COPY_P2P"].includes(attr(g, "data-state"))
      )
      expect(quiesced.length).toBeGreaterThan(0)
      const short: Record<string, string> = { RUNNING_P2P: "RP", PRE_COPY_P2P: "PCP" }
      let named = 0
      for (const g of quiesced) {
        const bar = g.children.find((c): c is XmlElement => typeof c !== "string" && c.name === "rect")
        const label = byClass(g, "state-label")[0]
        // 7 px is the smallest font; a name needs its width (0.6 em a character) and 4 px around it.
        const room = (short[attr(g, "data-state")] ?? "").length * 7 * 0.6 + 6
        if (num(bar, "width") >= room && num(bar, "height") >= 9) expect(label, attr(g, "data-device")).toBeDefined()
        if (label !== undefined) {
          named++
          expect([attr(g, "data-state"), short[attr(g, "data-state")]]).toContain(textOf(label))
        }
      }
      expect(named).toBeGreaterThan(0)
      expect(
        byClass(svg, "legend-item")
          .map((g) => textOf(g))
          .join(" ")
      ).toMatch(/PCP = PRE_COPY_P2P/)
    })
  )

  it("draws the P2P topology beside the lanes: a domain's members, an initiator's targets", () => {
    const svg = parseXml(
      renderTimelineSvg({
        devices: ["gpu0", "gpu1", "gpu2", "nic0", "vgpu0"].map((id) => ({ id, kind: "pci", initial: "RUNNING" })),
        entries: [{ _tag: "StateSpan", device: "gpu0", state: "RUNNING", from: 0, to: 10 }],
        p2p: {
          domains: [["gpu0", "gpu1", "gpu2"]],
          edges: [
            ["nic0", "gpu0"],
            ["nic0", "gpu2"]
          ]
        }
      })
    )
    const bands = laneBands(svg)
    const centre = (id: string) => {
      const band = bands.get(id)
      return band === undefined ? Number.NaN : (band.top + band.bottom) / 2
    }
    const [domain] = byClass(svg, "p2p-domain")
    expect(attr(domain, "data-members")).toBe("gpu0 gpu1 gpu2")
    expect(
      elements(domain ?? svg)
        .filter((e) => e.name === "circle")
        .map((c) => num(c, "cy"))
    ).toEqual(["gpu0", "gpu1", "gpu2"].map(centre))
    const [edges] = byClass(svg, "p2p-edges")
    expect([attr(edges, "data-initiator"), attr(edges, "data-targets")]).toEqual(["nic0", "gpu0 gpu2"])
    const arrows = elements(edges ?? svg).filter((e) => e.name === "line" && attr(e, "marker-end") !== "")
    expect(arrows.map((a) => num(a, "y2"))).toEqual(["gpu0", "gpu2"].map(centre))
    // Beside the lanes: left of where the plot's first state begins.
    const firstState = byClass(svg, "state")[0]?.children.find(
      (c): c is XmlElement => typeof c !== "string" && c.name === "rect"
    )
    for (const a of arrows) expect(num(a, "x2")).toBeLessThan(num(firstState, "x"))
    expect(legendKeys(svg)).toEqual(expect.arrayContaining(["p2p-domain", "p2p-edges"]))
  })

  it.effect("the recorder passes a group's topology on", () =>
    Effect.gen(function* () {
      const sim = yield* simulate(gpuClusterDoc())
      const recorder = makeTimelineRecorder({ devices: sim.group.devices, p2p: p2pOf(sim.group.topology) })
      yield* runOnVirtualTime(transition(sim, "RUNNING_P2P", { onEvent: recorder.onEvent }))
      const svg = parseXml(renderTimelineSvg(recorder.toInput()))
      expect(byClass(svg, "p2p-domain").map((g) => attr(g, "data-members"))).toEqual([
        Array.from({ length: 8 }, (_, i) => `gpu${i}`).join(" ")
      ])
      expect(byClass(svg, "p2p-edges").map((g) => attr(g, "data-initiator"))).toEqual(["nic0"])
    })
  )
})

describe("renderTimelineSvg: scale", () => {
  it.effect("64 devices: one lane each, lanes shrink, the picture stays a sensible size", () =>
    Effect.gen(function* () {
      const source = renderTimelineSvg(yield* record64Devices)
      keep("64.svg", source)
      const svg = parseXml(source)
      expect(laneIds(svg)).toEqual(Array.from({ length: 64 }, (_, i) => `gpu${i}`))
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
      const source = renderTimelineSvg(yield* recordTwoDevices)
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
    expect(() => parseXml("<a><b></a></b>")).toThrow(/does not match/)
    expect(() => parseXml("<a x=1/>")).toThrow(/quoted/)
    expect(() => parseXml("<a>&nbsp;</a>")).toThrow(/entity/)
    expect(() => parseXml("<a>x < y</a>")).toThrow()
    expect(() => parseXml('<a x="1" x="2"/>')).toThrow(/duplicate/)
    expect(() => parseXml("<a/><b/>")).toThrow(/after the root/)
    expect(() => parseXml("<a>")).toThrow(/unclosed/)
    expect(() => parseXml("<!DOCTYPE a><a/>")).toThrow(/DOCTYPE/)
    expect(() => parseXml("<a><![CDATA[x]]></a>")).toThrow(/CDATA/)
    expect(parseXml('<?xml version="1.0"?>\n<a q="&lt;&#65;"><!-- c --><b/>t&amp;</a>\n')).toEqual({
      name: "a",
      attributes: { q: "<A" },
      children: [{ name: "b", attributes: {}, children: [] }, "t&"]
    })
  })
})
