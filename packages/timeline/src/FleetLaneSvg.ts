import type { FleetLane, FleetPhaseSpan } from "./FleetTimelineSvg.js"
import {
  fleetDowntimeInk,
  fleetOutcomeColor,
  fleetPhaseColor,
  fleetUnknownPhase,
  font,
  ink,
  margin
} from "./Palette.js"
import { element, text, tooltip } from "./Svg.js"
import { formatDuration, stretchOf, type TimeScale } from "./TimeScale.js"

/**
 * One VM's lane of the fleet picture: its name and destination at the left, its phases attempt
 * by attempt (a phase that never ended runs to the end, faint), its downtime outlined, and how
 * it ended at the right.
 */

/** Where a fleet lane goes: its top, the plot's left edge and width, the time scale. */
export interface FleetLaneSlot {
  readonly y: number
  readonly x0: number
  readonly width: number
  readonly scale: TimeScale
  /** The evacuation's end: where a phase that never ended stops. */
  readonly end: number
}

export const fleetLaneHeight = 16

const renderPhase = (lane: FleetLane, span: FleetPhaseSpan, slot: FleetLaneSlot): string => {
  const to = span.to ?? slot.end
  const cut = span.to === undefined ? " (never ended: the attempt was cut short)" : ""
  const { x0: x, w: width } = stretchOf(slot.scale, span.from, to)
  return element(
    "rect",
    {
      class: "phase",
      "data-phase": span.phase,
      "data-attempt": span.attempt,
      x,
      y: slot.y + 2,
      width,
      height: fleetLaneHeight - 4,
      fill: fleetPhaseColor[span.phase] ?? fleetUnknownPhase,
      opacity: span.to === undefined ? 0.5 : 1
    },
    tooltip(`${lane.vm} attempt ${span.attempt}: ${span.phase} ${formatDuration(to - span.from)}${cut}`)
  )
}

const renderDowntime = (lane: FleetLane, slot: FleetLaneSlot): string => {
  if (lane.downtime === undefined) return ""
  const { from, to } = lane.downtime
  const { x0: x, w: width } = stretchOf(slot.scale, from, to)
  return element(
    "rect",
    {
      class: "downtime",
      x,
      y: slot.y + 0.5,
      width,
      height: fleetLaneHeight - 1,
      fill: "none",
      stroke: fleetDowntimeInk,
      "stroke-width": 1.5
    },
    tooltip(`${lane.vm} downtime ${formatDuration(to - from)}`)
  )
}

export const renderFleetLane = (lane: FleetLane, slot: FleetLaneSlot): string => {
  const { y } = slot
  const textY = y + fleetLaneHeight - 4
  return element("g", { class: "lane", "data-vm": lane.vm }, [
    element(
      "text",
      { class: "lane-label", x: margin, y: textY, "font-size": 11, "font-family": font, fill: ink },
      text(`${lane.vm} ${lane.detail}`)
    ),
    element("rect", { x: slot.x0, y, width: slot.width, height: fleetLaneHeight, fill: "#f6f7f9" }),
    ...lane.phases.map((span) => renderPhase(lane, span, slot)),
    renderDowntime(lane, slot),
    element(
      "text",
      {
        class: "outcome",
        x: slot.x0 + slot.width + 6,
        y: textY,
        "font-size": 11,
        "font-family": font,
        fill: fleetOutcomeColor[lane.outcome]
      },
      text(lane.outcome)
    )
  ])
}
