import { font, ink, muted } from "./Palette.js"
import { element, text, textWidth } from "./Svg.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { type TimeScale, tickFont } from "./TimeScale.js"

/** The grid: a faint vertical line through the lanes at each tick. */
export const renderGrid = (layout: TimelineLayout): string =>
  element(
    "g",
    { class: "grid" },
    layout.scale.ticks.map((t) =>
      element("line", {
        x1: t.x,
        y1: layout.lanesTop,
        x2: t.x,
        y2: layout.lanesBottom,
        stroke: "#dcdcdc",
        "stroke-width": 0.8
      })
    )
  )

/**
 * A time axis at `axisY`, its tick labels above (the top axis) or below (the bottom one): a line
 * over each stretch of time drawn to scale, none over a compressed one.
 */
const renderAxis = (layout: TimelineLayout, axisY: number, labelsAbove: boolean): string => {
  const { scale, width, plotX0 } = layout
  const lines = scale.segments
    .filter((s) => !s.compressed)
    .map((s) => element("line", { x1: s.x0, y1: axisY, x2: s.x1, y2: axisY, stroke: ink, "stroke-width": 1 }))
  const ticks = scale.ticks.map((t) => {
    const labelWidth = textWidth(t.label, tickFont)
    const anchor = t.x + labelWidth / 2 > width - 2 ? "end" : t.x - labelWidth / 2 < plotX0 - 10 ? "start" : "middle"
    return element("g", {}, [
      element("line", {
        x1: t.x,
        y1: axisY,
        x2: t.x,
        y2: labelsAbove ? axisY - 4 : axisY + 4,
        stroke: ink,
        "stroke-width": 1
      }),
      element(
        "text",
        { x: t.x, y: labelsAbove ? axisY - 6 : axisY + 14, "font-size": tickFont, fill: ink, "text-anchor": anchor },
        text(t.label)
      )
    ])
  })
  return element("g", { class: labelsAbove ? "axis axis-top" : "axis axis-bottom" }, [...lines, ...ticks])
}

/** The axes at the top and bottom of the lanes. */
export const renderAxes = (layout: TimelineLayout): ReadonlyArray<string> => [
  renderAxis(layout, layout.axisTop, true),
  renderAxis(layout, layout.axisBottom, false)
]

/** The fleet picture's axis: each tick's label at `axisY`, its grid line down to `bottom`. */
export const renderFleetAxis = (scale: TimeScale, axisY: number, bottom: number): ReadonlyArray<string> =>
  scale.ticks.flatMap((tick) => [
    element("line", { x1: tick.x, y1: axisY, x2: tick.x, y2: bottom, stroke: "#e5e5e5" }),
    element(
      "text",
      { x: tick.x, y: axisY - 3, "font-size": tickFont, "font-family": font, fill: muted, "text-anchor": "middle" },
      text(tick.label)
    )
  ])
