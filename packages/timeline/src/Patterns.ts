import { palette, red, rollbackInk, tones } from "./Palette.js"
import { element } from "./Svg.js"

/** A hatch of `stroke` lines `gap` px apart over `background`, turned by `angle` degrees. */
const hatch = (id: string, background: string, stroke: string, width: number, gap: number, angle: number) =>
  element(
    "pattern",
    {
      id,
      width: gap,
      height: gap,
      patternUnits: "userSpaceOnUse",
      patternTransform: `rotate(${angle})`
    },
    [
      element("rect", { width: gap, height: gap, fill: background }),
      element("line", { x1: 0, y1: 0, x2: 0, y2: gap, stroke, "stroke-width": width })
    ]
  )

/**
 * The fills and markers the timeline refers to by id: `arc-<tone>` (an arc hatched in its
 * target's colour), `rollback-hatch`, `break-hatch` (compressed time), `corrupt-hatch`, and the
 * `arrow` at the end of a P2P edge.
 */
export const renderPatterns = (): string =>
  element("defs", {}, [
    ...tones.map((tone) => hatch(`arc-${tone}`, palette[tone].tint, palette[tone].fill, 2.2, 5, 45)),
    hatch("rollback-hatch", "none", rollbackInk, 1.2, 7, -45),
    hatch("break-hatch", "#ffffff", "#c9c9c9", 1, 5, 60),
    hatch("corrupt-hatch", "none", red, 1.6, 5, -45),
    element(
      "marker",
      {
        id: "arrow",
        viewBox: "0 0 6 6",
        refX: 6,
        refY: 3,
        markerWidth: 5,
        markerHeight: 5,
        orient: "auto"
      },
      element("path", { d: "M0,0 L6,3 L0,6 z", fill: "#555555" })
    )
  ])
