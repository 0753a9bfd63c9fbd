import { type LegendItem, legendIf } from "./LegendSvg.js"
import { muted } from "./Palette.js"
import { element, text, tooltip } from "./Svg.js"
import type { P2PTopology } from "./TimelineInput.js"

/*
 * The P2P topology beside the lanes, in a narrow column between the lane labels and the plot:
 * who may write into whom, next to the states that make those writes safe or not. A domain
 * (devices that all write into each other) is a vertical line with a dot on each member's lane;
 * a device's explicit edges are a line from a dot on its lane (the initiator) to an arrow on each
 * target's lane. Each domain or initiator gets a track of its own, so lines never merge.
 */

/** One thing the column draws, on its track. */
interface ColumnItem {
  readonly kind: "domain" | "edges"
  /** The domain's members, or the initiator followed by its targets. */
  readonly devices: ReadonlyArray<string>
  readonly track: number
}

/** The laid-out column: its items and its width in px (0 when there is nothing to draw). */
export interface P2PColumn {
  readonly items: ReadonlyArray<ColumnItem>
  readonly width: number
}

const trackWidth = 9
const maxTracks = 12
const ink = "#444444"

/** Lays out the column for lanes in `laneIndex` order; devices without a lane are left out. */
export const layoutP2PColumn = (p2p: P2PTopology | undefined, laneIndex: ReadonlyMap<string, number>): P2PColumn => {
  if (p2p === undefined) return { items: [], width: 0 }
  const onLanes = (ids: ReadonlyArray<string>) => ids.filter((id) => laneIndex.has(id))
  const byInitiator = new Map<string, Array<string>>()
  for (const [initiator, target] of p2p.edges ?? []) {
    if (!laneIndex.has(initiator) || !laneIndex.has(target)) continue
    byInitiator.set(initiator, [...(byInitiator.get(initiator) ?? []), target])
  }
  const wanted = [
    ...(p2p.domains ?? []).map((members) => ({ kind: "domain" as const, devices: onLanes(members) })),
    ...[...byInitiator].map(([initiator, targets]) => ({ kind: "edges" as const, devices: [initiator, ...targets] }))
  ].filter((item) => item.devices.length >= 2)
  // A track is free below the last item it holds: items take the first free one, top to bottom.
  const span = (devices: ReadonlyArray<string>) => {
    const rows = devices.map((d) => laneIndex.get(d) ?? 0)
    return { lo: rows.reduce((a, b) => Math.min(a, b)), hi: rows.reduce((a, b) => Math.max(a, b)) }
  }
  const ends: Array<number> = []
  const items = wanted
    .map((item) => ({ ...item, ...span(item.devices) }))
    .sort((a, b) => a.lo - b.lo)
    .map((item) => {
      let track = ends.findIndex((end) => end < item.lo)
      if (track < 0) track = ends.length < maxTracks ? ends.length : ends.length - 1
      ends[track] = Math.max(ends[track] ?? -1, item.hi)
      return { kind: item.kind, devices: item.devices, track }
    })
  return { items, width: items.length === 0 ? 0 : Math.max(26, ends.length * trackWidth + 10) }
}

/** Draws the column whose left edge is `x0`; `centre` is the middle of a device's lane. */
export const renderP2PColumn = (
  column: P2PColumn,
  x0: number,
  labelY: number,
  centre: (device: string) => number
): string => {
  if (column.items.length === 0) return ""
  const right = x0 + column.width - 3
  const trackX = (track: number) => right - 6 - track * trackWidth
  const drawn = column.items.map((item) => {
    const tx = trackX(item.track)
    const ys = item.devices.map(centre)
    const vertical = element("line", {
      x1: tx,
      y1: ys.reduce((a, b) => Math.min(a, b)),
      x2: tx,
      y2: ys.reduce((a, b) => Math.max(a, b)),
      stroke: ink,
      "stroke-width": 1.2
    })
    if (item.kind === "domain")
      return element("g", { class: "p2p-domain", "data-members": item.devices.join(" ") }, [
        tooltip(`P2P domain: ${item.devices.join(", ")} may each write into every other`),
        vertical,
        ...ys.map((cy) => element("circle", { cx: tx, cy, r: 2.4, fill: ink }))
      ])
    const [initiator = "", ...targets] = item.devices
    return element("g", { class: "p2p-edges", "data-initiator": initiator, "data-targets": targets.join(" ") }, [
      tooltip(`${initiator} may write into ${targets.join(", ")} (P2P)`),
      vertical,
      element("circle", { cx: tx, cy: centre(initiator), r: 2.8, fill: ink }),
      ...targets.map((target) =>
        element("line", {
          x1: tx,
          y1: centre(target),
          x2: right,
          y2: centre(target),
          stroke: ink,
          "stroke-width": 1.2,
          "marker-end": "url(#arrow)"
        })
      )
    ])
  })
  return element("g", { class: "p2p" }, [
    element(
      "text",
      { x: x0 + column.width / 2, y: labelY, "font-size": 9, fill: muted, "text-anchor": "middle" },
      text("P2P")
    ),
    ...drawn
  ])
}

/** A domain's swatch and an initiator's edges', for whichever the column draws. */
export const p2pLegend = (column: P2PColumn): ReadonlyArray<LegendItem> => [
  ...legendIf(
    column.items.some((i) => i.kind === "domain"),
    {
      key: "p2p-domain",
      swatch: (sx, sy) =>
        [
          element("line", { x1: sx + 4, y1: sy + 6, x2: sx + 20, y2: sy + 6, stroke: ink, "stroke-width": 1.2 }),
          element("circle", { cx: sx + 4, cy: sy + 6, r: 2.4, fill: ink }),
          element("circle", { cx: sx + 20, cy: sy + 6, r: 2.4, fill: ink })
        ].join(""),
      label: "P2P domain: each member may write into every other"
    }
  ),
  ...legendIf(
    column.items.some((i) => i.kind === "edges"),
    {
      key: "p2p-edges",
      swatch: (sx, sy) =>
        [
          element("line", {
            x1: sx + 4,
            y1: sy + 6,
            x2: sx + 22,
            y2: sy + 6,
            stroke: ink,
            "stroke-width": 1.2,
            "marker-end": "url(#arrow)"
          }),
          element("circle", { cx: sx + 4, cy: sy + 6, r: 2.8, fill: ink })
        ].join(""),
      label: "P2P edge: initiator (dot) may write into target (arrow)"
    }
  )
]
