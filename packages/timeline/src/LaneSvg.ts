import { ink, margin, muted } from "./Palette.js"
import { element, text, tooltip } from "./Svg.js"
import type { Lane, TimelineLayout } from "./TimelineLayout.js"

/** A lane's label: the device's id (cut to fit, whole in the tooltip), and its kind where there is room. */
const laneLabel = (lane: Lane, top: number, layout: TimelineLayout): ReadonlyArray<string> => {
  const { laneHeight, laneFont, labelChars } = layout
  const label = lane.id.length > labelChars ? `${lane.id.slice(0, labelChars - 1)}…` : lane.id
  return [
    element(
      "text",
      {
        class: "lane-label",
        x: margin + 2,
        y: top + laneHeight / 2 + laneFont * 0.36,
        "font-size": laneFont,
        fill: ink
      },
      [tooltip(lane.kind === "" ? lane.id : `${lane.id} (${lane.kind})`), text(label)]
    ),
    layout.showKinds && lane.kind !== ""
      ? element(
          "text",
          { x: layout.p2pX0 - 8, y: top + laneHeight / 2 + 3, "font-size": 9, fill: muted, "text-anchor": "end" },
          text(lane.kind.length > 8 ? `${lane.kind.slice(0, 7)}…` : lane.kind)
        )
      : ""
  ]
}

/** The lanes: a background stripe per device, alternately shaded, with its label at the left. */
export const renderLanes = (layout: TimelineLayout): string =>
  element(
    "g",
    { class: "lanes" },
    layout.lanes.map((lane, i) => {
      const top = layout.lanesTop + i * layout.laneHeight
      return element("g", { class: "lane", "data-device": lane.id }, [
        element("rect", {
          x: margin,
          y: top,
          width: layout.plotX1 - margin,
          height: layout.laneHeight,
          fill: i % 2 === 0 ? "#f6f7f9" : "#ffffff"
        }),
        ...laneLabel(lane, top, layout)
      ])
    })
  )
