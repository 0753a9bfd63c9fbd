import { element, text, textWidth, tooltip } from "./Svg.js"
import { formatDuration, makeTimeScale, tickFont } from "./TimeScale.js"

/**
 * The picture of a host evacuation: one lane per VM, its migration's phases over wall-clock
 * time (attempt by attempt: a crashed attempt's phases stop where it stopped, and the recovery
 * that settled it follows), its downtime window outlined, and how it ended.
 */

/** A phase of one attempt of a VM's migration, during `[from, to]` (`to` absent: it never ended). */
export interface FleetPhaseSpan {
  readonly phase: string
  readonly attempt: number
  readonly from: number
  readonly to?: number | undefined
}

/** One VM's lane. */
export interface FleetLane {
  readonly vm: string
  /** Shown beside the VM's name, e.g. `→ host-b`. */
  readonly detail: string
  readonly outcome: "migrated" | "rolled-back" | "running" | "pending"
  readonly phases: ReadonlyArray<FleetPhaseSpan>
  /** The guest was stopped during `[from, to]` (switchover to resumed). */
  readonly downtime?: { readonly from: number; readonly to: number } | undefined
}

/** What a fleet timeline draws. Times are wall-clock ms. */
export interface FleetTimelineInput {
  readonly title: string
  readonly start: number
  readonly end: number
  readonly lanes: ReadonlyArray<FleetLane>
}

/** The colours of the phases (the migration package's phase names, plus the fleet's own). */
const phaseColor: Readonly<Record<string, string>> = {
  reserve: "#b8c2cc",
  handshake: "#9ecae1",
  prepare: "#6baed6",
  precopy: "#3f7cc0",
  switchover: "#f08c2e",
  drain: "#e8590c",
  validate: "#d9480f",
  commit: "#c92a2a",
  resume: "#a61e4d",
  recover: "#6a3d9a"
}
const legendOrder = Object.keys(phaseColor)
const outcomeColor = { migrated: "#2b8a3e", "rolled-back": "#c92a2a", running: "#666666", pending: "#999999" } as const
const ink = "#222222"
const muted = "#666666"
const font = "sans-serif"
const margin = 14
const laneHeight = 16
const gap = 4

/**
 * Draws an evacuation as a standalone SVG (`width` px wide, default 1200): a title, an axis in
 * seconds from the evacuation's start, a lane per VM, and a legend of the phases.
 */
export const renderFleetTimelineSvg = (
  input: FleetTimelineInput,
  options: { readonly width?: number } = {}
): string => {
  const width = Math.max(480, options.width ?? 1200)
  const labels = input.lanes.map((l) => `${l.vm} ${l.detail}`)
  const labelPx = Math.min(260, Math.max(80, ...labels.map((l) => textWidth(l, 11) + 8)))
  const outcomePx = 80
  const x0 = margin + labelPx
  const axisWidth = width - x0 - outcomePx - margin
  const scale = makeTimeScale({
    start: input.start,
    end: input.end,
    x0,
    width: axisWidth,
    activity: [],
    typicalArcMs: undefined,
    compress: false
  })
  const top = margin + 22
  const axisY = top + 14
  const lanesY = axisY + 8
  const legendY = lanesY + input.lanes.length * (laneHeight + gap) + 12
  const height = legendY + 24
  const parts: Array<string> = []
  parts.push(element("rect", { x: 0, y: 0, width, height, fill: "#ffffff" }))
  parts.push(
    element("text", { x: margin, y: margin + 12, "font-size": 14, "font-family": font, fill: ink }, text(input.title))
  )
  for (const tick of scale.ticks) {
    parts.push(element("line", { x1: tick.x, y1: axisY, x2: tick.x, y2: legendY - 8, stroke: "#e5e5e5" }))
    parts.push(
      element(
        "text",
        { x: tick.x, y: axisY - 3, "font-size": tickFont, "font-family": font, fill: muted, "text-anchor": "middle" },
        text(tick.label)
      )
    )
  }
  input.lanes.forEach((lane, i) => {
    const y = lanesY + i * (laneHeight + gap)
    const lanePart: Array<string> = []
    lanePart.push(
      element(
        "text",
        { class: "lane-label", x: margin, y: y + laneHeight - 4, "font-size": 11, "font-family": font, fill: ink },
        text(`${lane.vm} ${lane.detail}`)
      )
    )
    lanePart.push(element("rect", { x: x0, y, width: axisWidth, height: laneHeight, fill: "#f6f7f9" }))
    for (const span of lane.phases) {
      const to = span.to ?? input.end
      const a = scale.x(span.from)
      const b = Math.max(a + 1, scale.x(to))
      const label = `${lane.vm} attempt ${span.attempt}: ${span.phase} ${formatDuration(to - span.from)}${span.to === undefined ? " (never ended: the attempt was cut short)" : ""}`
      lanePart.push(
        element(
          "rect",
          {
            class: "phase",
            "data-phase": span.phase,
            "data-attempt": span.attempt,
            x: a,
            y: y + 2,
            width: b - a,
            height: laneHeight - 4,
            fill: phaseColor[span.phase] ?? "#999999",
            opacity: span.to === undefined ? 0.5 : 1
          },
          tooltip(label)
        )
      )
    }
    if (lane.downtime !== undefined) {
      const a = scale.x(lane.downtime.from)
      const b = Math.max(a + 1, scale.x(lane.downtime.to))
      lanePart.push(
        element(
          "rect",
          {
            class: "downtime",
            x: a,
            y: y + 0.5,
            width: b - a,
            height: laneHeight - 1,
            fill: "none",
            stroke: "#c92a2a",
            "stroke-width": 1.5
          },
          tooltip(`${lane.vm} downtime ${formatDuration(lane.downtime.to - lane.downtime.from)}`)
        )
      )
    }
    lanePart.push(
      element(
        "text",
        {
          class: "outcome",
          x: x0 + axisWidth + 6,
          y: y + laneHeight - 4,
          "font-size": 11,
          "font-family": font,
          fill: outcomeColor[lane.outcome]
        },
        text(lane.outcome)
      )
    )
    parts.push(element("g", { class: "lane", "data-vm": lane.vm }, lanePart))
  })
  let lx = margin
  for (const phase of legendOrder) {
    parts.push(element("rect", { x: lx, y: legendY, width: 10, height: 10, fill: phaseColor[phase] }))
    parts.push(
      element("text", { x: lx + 14, y: legendY + 9, "font-size": 10, "font-family": font, fill: ink }, text(phase))
    )
    lx += 24 + textWidth(phase, 10)
  }
  parts.push(
    element("rect", { x: lx, y: legendY, width: 10, height: 10, fill: "none", stroke: "#c92a2a", "stroke-width": 1.5 })
  )
  parts.push(
    element("text", { x: lx + 14, y: legendY + 9, "font-size": 10, "font-family": font, fill: ink }, text("downtime"))
  )
  return `<?xml version="1.0" encoding="UTF-8"?>\n${element(
    "svg",
    { xmlns: "http://www.w3.org/2000/svg", width, height, viewBox: `0 0 ${width} ${height}` },
    parts
  )}\n`
}
