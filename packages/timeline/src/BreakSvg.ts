import { type LegendItem, legendIf, solidSwatch } from "./LegendSvg.js"
import { muted } from "./Palette.js"
import { element, text, tooltip } from "./Svg.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { formatDuration } from "./TimeScale.js"

/**
 * Compressed stretches of idle time: hatched over everything from axis to axis, with zigzag
 * edges and, below the bottom axis, the time each stands for.
 */

const zigzag = (bx: number, y0: number, y1: number) => {
  const points: Array<string> = []
  for (let yy = y0, k = 0; yy <= y1; yy += 4, k++) points.push(`${bx + (k % 2 === 0 ? -2 : 2)},${yy}`)
  return element("polyline", { points: points.join(" "), fill: "none", stroke: "#9a9a9a", "stroke-width": 1 })
}

const breaksOf = (layout: TimelineLayout) => layout.scale.segments.filter((s) => s.compressed)

export const renderBreaks = (layout: TimelineLayout): string => {
  const { axisTop, axisBottom } = layout
  return element(
    "g",
    { class: "breaks" },
    breaksOf(layout).map((b) =>
      element("g", { class: "break" }, [
        tooltip(`${formatDuration(b.t1 - b.t0)} of idle time, compressed`),
        element("rect", {
          x: b.x0 + 2,
          y: axisTop - 6,
          width: b.x1 - b.x0 - 4,
          height: axisBottom - axisTop + 12,
          fill: "url(#break-hatch)",
          "fill-opacity": 0.85
        }),
        zigzag(b.x0 + 2, axisTop - 6, axisBottom + 6),
        zigzag(b.x1 - 2, axisTop - 6, axisBottom + 6),
        element(
          "text",
          { x: (b.x0 + b.x1) / 2, y: axisBottom + 16, "font-size": 9, fill: muted, "text-anchor": "middle" },
          text(`≈${formatDuration(b.t1 - b.t0)}`)
        )
      ])
    )
  )
}

export const breakLegend = (layout: TimelineLayout): ReadonlyArray<LegendItem> =>
  legendIf(breaksOf(layout).length > 0, {
    key: "break",
    swatch: solidSwatch("url(#break-hatch)"),
    label: "idle time, compressed"
  })
