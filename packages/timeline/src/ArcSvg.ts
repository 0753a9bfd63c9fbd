import { type LegendItem, legendIf } from "./LegendSvg.js"
import { palette, red, toneOf } from "./Palette.js"
import { element, tooltip } from "./Svg.js"
import type { ArcSpan } from "./TimelineInput.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { formatDuration } from "./TimeScale.js"

/**
 * The arcs in flight, over the states: a bar hatched in the colour of the arc's target state,
 * outlined dashed while still running, in red with a cross at its end when it failed.
 */

/** A red cross from `(x0, y0)` to `(x1, y1)`, as a failed arc ends. */
const cross = (x0: number, y0: number, x1: number, y1: number, cls?: string): string =>
  element("path", {
    class: cls,
    d: `M${x0},${y0} L${x1},${y1} M${x0},${y1} L${x1},${y0}`,
    stroke: red,
    "stroke-width": 2.2,
    "stroke-linecap": "round"
  })

const renderArc = (a: ArcSpan, layout: TimelineLayout): string => {
  const { x0, w } = layout.span(a.from, a.to, 1.5)
  const { barHeight } = layout
  const tone = toneOf(a.arc.to)
  const top = layout.laneTop(a.device) + layout.barPad
  const failed = a.outcome === "failed"
  const status =
    a.outcome === "done" ? "" : a.outcome === "failed" ? ` failed: ${a.error ?? "unknown error"}` : " (still in flight)"
  const size = Math.min(barHeight, 10) / 2
  // Inside the arc's end, clear of a reset drawn just after it.
  const cx = x0 + w - size - 1
  const cy = top + barHeight / 2
  return element("g", { class: "arc", "data-device": a.device, "data-outcome": a.outcome }, [
    tooltip(`${a.id} ${a.device}: ${a.arc.from} → ${a.arc.to}, ${formatDuration(a.to - a.from)}${status}`),
    element("rect", {
      x: x0,
      y: top,
      width: w,
      height: barHeight,
      fill: `url(#arc-${tone})`,
      stroke: failed ? red : palette[tone].fill,
      "stroke-width": failed ? 1.5 : 0.8,
      "stroke-dasharray": a.outcome === "running" ? "3 2" : undefined
    }),
    failed ? cross(cx - size, cy - size, cx + size, cy + size, "failure") : ""
  ])
}

export const renderArcs = (arcs: ReadonlyArray<ArcSpan>, layout: TimelineLayout): string =>
  element(
    "g",
    { class: "arcs" },
    arcs.map((a) => renderArc(a, layout))
  )

/** How many arcs failed. */
export const failedArcs = (arcs: ReadonlyArray<ArcSpan>): number => arcs.filter((a) => a.outcome === "failed").length

export const arcLegend = (arcs: ReadonlyArray<ArcSpan>): ReadonlyArray<LegendItem> => [
  {
    key: "arc",
    swatch: (sx, sy) =>
      element("rect", {
        x: sx,
        y: sy,
        width: 24,
        height: 12,
        fill: "url(#arc-halted)",
        stroke: palette.halted.fill,
        "stroke-width": 0.8
      }),
    label: "arc in flight (hatched in its target's colour)"
  },
  ...legendIf(failedArcs(arcs) > 0, {
    key: "failure",
    swatch: (sx, sy) => cross(sx + 7, sy + 1, sx + 17, sy + 11),
    label: `arc failed (${failedArcs(arcs)})`
  })
]
