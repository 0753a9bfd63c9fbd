import { fleetDowntimeInk, fleetPhaseColor, font, ink, margin } from "./Palette.js"
import { element, text, textWidth } from "./Svg.js"

/** One entry of the fleet legend: a 10×10 swatch and its name. */
const entry = (x: number, y: number, swatch: Readonly<Record<string, string | number>>, name: string) => [
  element("rect", { x, y, width: 10, height: 10, ...swatch }),
  element("text", { x: x + 14, y: y + 9, "font-size": 10, "font-family": font, fill: ink }, text(name))
]

/** The fleet picture's legend at `y`: each phase's colour, in the order a migration goes through them, and the downtime outline. */
export const renderFleetLegend = (y: number): ReadonlyArray<string> => {
  const parts: Array<string> = []
  let x = margin
  for (const [phase, fill] of Object.entries(fleetPhaseColor)) {
    parts.push(...entry(x, y, { fill }, phase))
    x += 24 + textWidth(phase, 10)
  }
  parts.push(...entry(x, y, { fill: "none", stroke: fleetDowntimeInk, "stroke-width": 1.5 }, "downtime"))
  return parts
}
