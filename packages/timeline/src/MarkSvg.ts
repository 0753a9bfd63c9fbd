import { type LegendItem, legendIf } from "./LegendSvg.js"
import { ink } from "./Palette.js"
import { element, tooltip } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"
import type { Mark, Quarantine, Reset } from "./TimelineInput.js"
import type { TimelineLayout } from "./TimelineLayout.js"

/**
 * What happened to one device at an instant, on its lane: a reset (a ring just after it), a
 * quarantine in ERROR (a black square), a mark of the device's own (a notch at the lane's top).
 * Group-wide marks go in the header.
 */

const markSize = (layout: TimelineLayout) => Math.min(layout.barHeight / 2, 5)

const renderReset = (r: Reset, layout: TimelineLayout): string =>
  element("g", { class: "reset", "data-device": r.device }, [
    tooltip(`${r.device} reset from ${r.from}`),
    element("circle", {
      cx: layout.x(r.at) + markSize(layout) + 1,
      cy: layout.centre(r.device),
      r: markSize(layout),
      fill: "#ffffff",
      stroke: ink,
      "stroke-width": 1.6
    })
  ])

const renderQuarantine = (q: Quarantine, layout: TimelineLayout): string => {
  const size = markSize(layout)
  return element("g", { class: "quarantine", "data-device": q.device }, [
    tooltip(`${q.device} quarantined in ERROR`),
    element("rect", {
      x: layout.x(q.at) - size,
      y: layout.centre(q.device) - size,
      width: 2 * size,
      height: 2 * size,
      fill: ink
    })
  ])
}

const renderDeviceMark = (m: Mark, device: string, layout: TimelineLayout): string => {
  const mx = layout.x(m.at)
  const top = layout.laneTop(device)
  return element("g", { class: "mark", "data-device": device }, [
    tooltip(`${device}: ${m.label}`),
    element("path", {
      d: `M${mx - 4},${top} L${mx + 4},${top} L${mx},${top + Math.min(7, layout.laneHeight / 2)} z`,
      fill: ink
    })
  ])
}

export const renderDeviceMarks = (entries: Entries, layout: TimelineLayout): string =>
  element("g", { class: "device-marks" }, [
    ...entries.resets.map((r) => renderReset(r, layout)),
    ...entries.quarantines.map((q) => renderQuarantine(q, layout)),
    ...entries.marks.flatMap((m) => (m.device === undefined ? [] : [renderDeviceMark(m, m.device, layout)]))
  ])

export const deviceMarkLegend = (entries: Entries): ReadonlyArray<LegendItem> => [
  ...legendIf(entries.resets.length > 0, {
    key: "reset",
    swatch: (sx, sy) =>
      element("circle", { cx: sx + 12, cy: sy + 6, r: 5, fill: "#ffffff", stroke: ink, "stroke-width": 1.6 }),
    label: "reset"
  }),
  ...legendIf(entries.quarantines.length > 0, {
    key: "quarantine",
    swatch: (sx, sy) => element("rect", { x: sx + 7, y: sy + 1, width: 10, height: 10, fill: ink }),
    label: "quarantined"
  })
]
