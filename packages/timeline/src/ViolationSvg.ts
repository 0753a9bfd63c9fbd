import { bandSwatch, type LegendItem, legendIf } from "./LegendSvg.js"
import { red } from "./Palette.js"
import { element, tooltip } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"
import type { CorruptingWrites, Violation } from "./TimelineInput.js"
import type { TimelineLayout } from "./TimelineLayout.js"

/**
 * P2P invariant violations, in red on the target's lane (the device that must not be written
 * into while halted): a strip and an outline over the time it lasted, a marker where it began,
 * and a dashed line from the initiator's lane. Corrupting writes are red hatching on the target.
 */

const renderCorruption = (c: CorruptingWrites, layout: TimelineLayout): string => {
  const { x0, w } = layout.span(c.from, c.to, 2)
  return element("g", { class: "corrupting-writes", "data-initiator": c.initiator, "data-target": c.target }, [
    tooltip(`${c.writes} write(s) ${c.initiator} → ${c.target} landed while ${c.target} could be halted`),
    element("rect", {
      x: x0,
      y: layout.laneTop(c.target) + layout.barPad,
      width: w,
      height: layout.barHeight,
      fill: "url(#corrupt-hatch)",
      "fill-opacity": 0.8
    })
  ])
}

/** A strip along the top of a lane and an outline over it: the state beneath stays readable. */
const violationBand = (x: number, y: number, width: number, height: number, strip: number): ReadonlyArray<string> => [
  element("rect", { x, y, width, height: strip, fill: red }),
  element("rect", { x, y, width, height, fill: red, "fill-opacity": 0.12, stroke: red, "stroke-width": 1.5 })
]

const renderViolation = (v: Violation, layout: TimelineLayout): string => {
  const { laneHeight, barPad, barHeight } = layout
  const open = v.to === undefined
  const { x0, w } = layout.span(v.from, v.to ?? layout.end, 5)
  const top = layout.laneTop(v.target)
  const tri = Math.min(5, laneHeight / 2.5)
  const from = layout.centre(v.initiator)
  return element("g", { class: "violation", "data-initiator": v.initiator, "data-target": v.target }, [
    tooltip(open ? `${v.description} (still open at the end)` : v.description),
    element("line", {
      x1: x0,
      y1: from,
      x2: x0,
      y2: top + laneHeight / 2,
      stroke: red,
      "stroke-width": 1,
      "stroke-dasharray": "3 2"
    }),
    element("circle", { cx: x0, cy: from, r: 2.2, fill: red }),
    ...violationBand(x0, top + 0.5, w, laneHeight - 1, barPad + barHeight * 0.2),
    element("path", { d: `M${x0 - tri},${top - tri} L${x0 + tri},${top - tri} L${x0},${top + tri} z`, fill: red })
  ])
}

export const renderViolations = (entries: Entries, layout: TimelineLayout): string =>
  element("g", { class: "violations" }, [
    ...entries.corruptions.map((c) => renderCorruption(c, layout)),
    ...entries.violations.map((v) => renderViolation(v, layout))
  ])

/** Violations with their count, or that none were seen when the invariant was checked. */
export const violationLegend = (entries: Entries, invariantChecked: boolean): ReadonlyArray<LegendItem> => {
  const count = entries.violations.length
  const verdict: ReadonlyArray<LegendItem> =
    count > 0
      ? [
          {
            key: "violation",
            swatch: (sx, sy) => violationBand(sx, sy, 24, 12, 3.5).join(""),
            label: `P2P violation on the target's lane, from its initiator (${count})`
          }
        ]
      : invariantChecked
        ? [
            {
              key: "no-violation",
              swatch: (sx, sy) =>
                element("path", {
                  d: `M${sx + 5},${sy + 6} L${sx + 10},${sy + 11} L${sx + 19},${sy + 1}`,
                  fill: "none",
                  stroke: "#2e8b57",
                  "stroke-width": 2.2
                }),
              label: "no P2P violation"
            }
          ]
        : []
  return [
    ...verdict,
    ...legendIf(entries.corruptions.length > 0, {
      key: "corrupting-writes",
      swatch: bandSwatch("url(#corrupt-hatch)", 1, red),
      label: "corrupting P2P writes"
    })
  ]
}
