import { renderFleetAxis } from "./AxisSvg.js"
import { fleetLaneHeight, renderFleetLane } from "./FleetLaneSvg.js"
import { renderFleetLegend } from "./FleetLegendSvg.js"
import { font, ink, margin } from "./Palette.js"
import { element, svgDocument, text, textWidth } from "./Svg.js"
import { makeTimeScale } from "./TimeScale.js"

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

/** Space between lanes, px. */
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
  const axisY = margin + 22 + 14
  const lanesY = axisY + 8
  const legendY = lanesY + input.lanes.length * (fleetLaneHeight + gap) + 12
  const height = legendY + 24
  return svgDocument({ width, height, viewBox: `0 0 ${width} ${height}` }, [
    element("rect", { x: 0, y: 0, width, height, fill: "#ffffff" }),
    element("text", { x: margin, y: margin + 12, "font-size": 14, "font-family": font, fill: ink }, text(input.title)),
    ...renderFleetAxis(scale, axisY, legendY - 8),
    ...input.lanes.map((lane, i) =>
      renderFleetLane(lane, { y: lanesY + i * (fleetLaneHeight + gap), x0, width: axisWidth, scale, end: input.end })
    ),
    ...renderFleetLegend(legendY)
  ])
}
