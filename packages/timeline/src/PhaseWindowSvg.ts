import { bandSwatch, type LegendItem, legendIf } from "./LegendSvg.js"
import { downtimeInk, phaseGray, rollbackInk } from "./Palette.js"
import { element, tooltip } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { formatDuration } from "./TimeScale.js"

/**
 * Phase and rollback windows: bands across every lane over the time they took (a migration's
 * pre-copy rounds, its switchover, the downtime window highlighted; a rollback hatched). The
 * bands go behind the bars, so the states keep their true colours; the edges go over them.
 */

interface PhaseWindow {
  readonly from: number
  readonly to: number
  readonly color: string
  readonly fill: string
  readonly opacity: number
  /** A solid, thicker edge (downtime, rollback); otherwise dashed. */
  readonly strong: boolean
  readonly group: Readonly<Record<string, string>>
  readonly title: string
}

export const phaseWindowsOf = (entries: Entries): ReadonlyArray<PhaseWindow> => [
  ...entries.phases.map((p) => {
    const downtime = p.emphasis === "downtime"
    return {
      from: p.from,
      to: p.to,
      color: downtime ? downtimeInk : phaseGray,
      fill: downtime ? downtimeInk : phaseGray,
      opacity: downtime ? 0.28 : 0.14,
      strong: downtime,
      group: { class: "phase", "data-emphasis": p.emphasis },
      title: `${p.label}: ${formatDuration(p.to - p.from)}`
    }
  }),
  ...entries.rollbacks.map((r) => ({
    from: r.from,
    to: r.to,
    color: rollbackInk,
    fill: "url(#rollback-hatch)",
    opacity: 0.6,
    strong: true,
    group: { class: "rollback", "data-ok": r.ok ? "true" : "false" },
    title: `rollback${r.ok ? "" : " (incomplete)"}: ${r.cause}`
  }))
]

/** The windows' bands, behind everything on the lanes. */
export const renderWindowBands = (windows: ReadonlyArray<PhaseWindow>, layout: TimelineLayout): string =>
  element(
    "g",
    { class: "windows" },
    windows.map((w) => {
      const { x0, w: bandWidth } = layout.span(w.from, w.to, 1)
      return element("g", w.group, [
        tooltip(w.title),
        element("rect", {
          x: x0,
          y: layout.lanesTop,
          width: bandWidth,
          height: layout.lanesBottom - layout.lanesTop,
          fill: w.fill,
          "fill-opacity": w.opacity
        })
      ])
    })
  )

/** The windows' edges, over the bars. */
export const renderWindowEdges = (windows: ReadonlyArray<PhaseWindow>, layout: TimelineLayout): string =>
  element(
    "g",
    { class: "window-edges" },
    windows.flatMap((w) =>
      [layout.x(w.from), layout.x(w.to)].map((ex) =>
        element("line", {
          x1: ex,
          y1: layout.lanesTop,
          x2: ex,
          y2: layout.lanesBottom,
          stroke: w.color,
          "stroke-width": w.strong ? 1.4 : 0.9,
          "stroke-dasharray": w.strong ? undefined : "4 3"
        })
      )
    )
  )

export const phaseWindowLegend = (entries: Entries): ReadonlyArray<LegendItem> => [
  ...legendIf(
    entries.phases.some((p) => p.emphasis === "normal"),
    {
      key: "phase",
      swatch: bandSwatch(phaseGray, 0.15, phaseGray),
      label: "phase"
    }
  ),
  ...legendIf(
    entries.phases.some((p) => p.emphasis === "downtime"),
    {
      key: "downtime",
      swatch: bandSwatch(downtimeInk, 0.25, downtimeInk),
      label: "switchover (downtime)"
    }
  ),
  ...legendIf(entries.rollbacks.length > 0, {
    key: "rollback",
    swatch: bandSwatch("url(#rollback-hatch)", 0.6, rollbackInk),
    label: "rollback"
  })
]
