import type { LaneGeometry } from "./LaneGeometry.js"
import { type LegendItem, legendIf } from "./LegendSvg.js"
import { ink } from "./Palette.js"
import { element, text, textWidth, tooltip } from "./Svg.js"
import type { Wait } from "./TimelineInput.js"
import { formatDuration } from "./TimeScale.js"

/**
 * The name of `device` as a neighbour of `from` would say it: a prefix both lanes share up to a
 * space (`src gpu2` beside `src gpu0`) is left out.
 */
const nameBeside = (device: string, from: string): string => {
  const space = device.lastIndexOf(" ")
  return space > 0 && from.startsWith(device.slice(0, space + 1)) ? device.slice(space + 1) : device
}

/** A stretch of a lane already written on. */
export interface Occupied {
  readonly device: string
  readonly x0: number
  readonly x1: number
}

/** The widest stretch of `[x0, x1]` on `device`'s lane that nothing is written on. */
const freeRoom = (device: string, x0: number, x1: number, occupied: ReadonlyArray<Occupied>) => {
  const taken = occupied.filter((o) => o.device === device && o.x1 > x0 && o.x0 < x1).sort((a, b) => a.x0 - b.x0)
  let best = { x0, w: 0 }
  let from = x0
  for (const o of [...taken, { device, x0: x1, x1 }]) {
    const to = Math.min(o.x0, x1)
    if (to - from > best.w) best = { x0: from, w: to - from }
    from = Math.max(from, o.x1)
  }
  return best
}

/** The label of a wait that `room` px can carry: `for gpu2`, else `gpu2`, else none. */
const waitLabel = (wait: Wait, room: number, fontSize: number): string | undefined => {
  if (wait.waitedFor === undefined) return undefined
  const name = nameBeside(wait.waitedFor.device, wait.device)
  return [`for ${name}`, name].find((label) => textWidth(label, fontSize) + 4 <= room)
}

/**
 * The dependency waits, each drawn on the waiting device's lane only: a dotted line from when its
 * arc was ready to when it started, an arrowhead into that arc, and the name of the device it
 * waited for written over the line when there is room (always in its tooltip). Nothing crosses
 * the lanes in between. `labels: false` leaves the names to the tooltips.
 */
export const renderWaits = (
  waits: ReadonlyArray<Wait>,
  g: LaneGeometry,
  labels: boolean,
  occupied: ReadonlyArray<Occupied> = []
): string => {
  const width = Math.min(1.6, Math.max(1.1, g.barHeight * 0.12))
  const labelFont = Math.max(7, Math.min(9, g.laneFont - 3))
  return waits
    .map((w) => {
      const x0 = g.x(w.from)
      const x1 = Math.max(x0 + 1, g.x(w.to))
      // Along the bottom of the bar, clear of the state's name.
      const cy = g.laneTop(w.device) + g.barPad + g.barHeight - Math.max(2, g.barHeight * 0.2)
      const because = w.waitedFor === undefined ? "" : ` for ${w.waitedFor.id} of ${w.waitedFor.device}`
      const line = (stroke: string, strokeWidth: number, dash: string | undefined) =>
        element("line", {
          x1: x0,
          y1: cy,
          x2: x1,
          y2: cy,
          stroke,
          "stroke-width": strokeWidth,
          "stroke-dasharray": dash,
          "stroke-linecap": "round"
        })
      const head = Math.max(2, Math.min(3.5, g.barHeight * 0.18))
      // Beside any state name written over the wait, clear of the arrowhead.
      const room = freeRoom(w.device, x0 + 1, x1 - 2 * head, occupied)
      const label = labels && g.barHeight >= 11 ? waitLabel(w, room.w, labelFont) : undefined
      return element("g", { class: "wait", "data-device": w.device, "data-waited-for": w.waitedFor?.device }, [
        tooltip(`${w.id} ${w.device} waited ${formatDuration(w.to - w.from)}${because}`),
        line("#ffffff", width * 2, undefined),
        line(ink, width, "0.1 3"),
        element("path", {
          d: `M${x1 - 2 * head},${cy - head} L${x1},${cy} L${x1 - 2 * head},${cy + head} z`,
          fill: ink
        }),
        label === undefined
          ? ""
          : element(
              "text",
              { class: "wait-label", x: room.x0 + 2, y: cy - head - 1.5, "font-size": labelFont, fill: ink },
              text(label)
            )
      ])
    })
    .join("")
}

/**
 * Where each wait ended, the arc that released it: on the releasing device's lane a small
 * diamond at the arc's end, and through the lanes of the devices it released a thin vertical
 * line at that instant. The line is drawn only over runs of adjacent lanes that take part (the
 * releaser and its waiters): a lane that did not wait is never crossed, so the line says who
 * waited for whom. Tooltips name them.
 */
export const renderReleases = (waits: ReadonlyArray<Wait>, g: LaneGeometry): string => {
  const releases = new Map<string, { device: string; id: string; at: number; waiting: Array<string> }>()
  for (const w of waits) {
    if (w.waitedFor === undefined) continue
    const key = `${w.waitedFor.device}\u0000${w.waitedFor.id}\u0000${w.waitedFor.at}`
    const release = releases.get(key) ?? { ...w.waitedFor, waiting: [] }
    if (!release.waiting.includes(w.device)) release.waiting.push(w.device)
    releases.set(key, release)
  }
  const size = Math.max(2, Math.min(4, g.barHeight * 0.25))
  return [...releases.values()]
    .map((r) => {
      const cx = g.x(r.at)
      const cy = g.laneTop(r.device) + g.barPad + g.barHeight - Math.max(2, g.barHeight * 0.2)
      // Runs of adjacent lanes among the releaser and its waiters, top to bottom.
      const tops = [...new Set([r.device, ...r.waiting].map(g.laneTop))].sort((a, b) => a - b)
      const runs: Array<{ top: number; bottom: number }> = []
      for (const top of tops) {
        const last = runs.at(-1)
        if (last !== undefined && Math.abs(top - last.bottom) < 0.5) last.bottom = top + g.laneHeight
        else runs.push({ top, bottom: top + g.laneHeight })
      }
      const lines = runs.map((run) =>
        element("line", {
          x1: cx,
          y1: run.top + g.barPad,
          x2: cx,
          y2: run.bottom - g.barPad,
          stroke: ink,
          "stroke-width": 0.9,
          "stroke-opacity": 0.75
        })
      )
      return element("g", { class: "release", "data-device": r.device, "data-released": r.waiting.join(" ") }, [
        tooltip(`${r.id} of ${r.device} ended: ${r.waiting.join(", ")} could go on`),
        ...lines,
        element("path", {
          d: `M${cx},${cy - size} L${cx + size},${cy} L${cx},${cy + size} L${cx - size},${cy} z`,
          fill: "#ffffff",
          stroke: ink,
          "stroke-width": 1.2
        })
      ])
    })
    .join("")
}

/** Waits, and the releases when a wait named the arc it waited for. */
export const waitLegend = (waits: ReadonlyArray<Wait>): ReadonlyArray<LegendItem> => [
  {
    key: "wait",
    swatch: (sx, sy) =>
      element("line", {
        x1: sx + 2,
        y1: sy + 6,
        x2: sx + 22,
        y2: sy + 6,
        stroke: ink,
        "stroke-width": 1.6,
        "stroke-dasharray": "0.1 3",
        "stroke-linecap": "round"
      }),
    label: "waiting for another device (named on the line where there is room)"
  },
  ...legendIf(
    waits.some((w) => w.waitedFor !== undefined),
    {
      key: "release",
      swatch: (sx, sy) =>
        element("path", {
          d: `M${sx + 12},${sy + 2} L${sx + 16},${sy + 6} L${sx + 12},${sy + 10} L${sx + 8},${sy + 6} z`,
          fill: "#ffffff",
          stroke: ink,
          "stroke-width": 1.2
        }),
      label: "the arc whose end released waiting devices (a line through their lanes)"
    }
  )
]
