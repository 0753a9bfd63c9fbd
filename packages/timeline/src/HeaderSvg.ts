import { downtimeInk, ink, rollbackInk } from "./Palette.js"
import { element, text, textWidth } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"

/**
 * The header rows above the lanes: phases and rollbacks as labelled bars over the time they
 * took, group-wide marks as a label with a dotted line down through the lanes. Each label goes
 * in the first row where it fits, so none overlap however many there are.
 */

/** A labelled item of the header rows. */
interface HeaderItem {
  readonly x0: number
  readonly x1: number
  readonly label: string
  readonly color: string
  readonly bold: boolean
  /** Draw a bar under the label spanning `[x0, x1]`. */
  readonly bar: boolean
}

/** The header's items and the row of each. */
export interface HeaderLayout {
  readonly items: ReadonlyArray<HeaderItem>
  readonly rows: ReadonlyArray<number>
  readonly count: number
}

const headerFont = 10
/** The height of one header row, px. */
export const headerRowHeight = 16

const headerItems = (entries: Entries, x: (at: number) => number): Array<HeaderItem> => [
  ...entries.phases.map((p) => ({
    x0: x(p.from),
    x1: x(p.to),
    label: p.label,
    color: p.emphasis === "downtime" ? downtimeInk : "#4a5a70",
    bold: p.emphasis === "downtime",
    bar: true
  })),
  ...entries.rollbacks.map((r) => ({
    x0: x(r.from),
    x1: x(r.to),
    label: r.ok ? "rollback" : "rollback (incomplete)",
    color: rollbackInk,
    bold: true,
    bar: true
  })),
  ...entries.marks
    .filter((m) => m.device === undefined)
    .map((m) => ({ x0: x(m.at), x1: x(m.at), label: m.label, color: ink, bold: false, bar: false }))
]

/** Assigns each header item the first row where its label and bar fit, returning the row of each. */
const headerRows = (items: ReadonlyArray<HeaderItem>, fontSize: number): { rows: Array<number>; count: number } => {
  const ends: Array<number> = []
  const order = items.map((item, i) => ({ item, i })).sort((a, b) => a.item.x0 - b.item.x0)
  const rows = items.map(() => 0)
  for (const { item, i } of order) {
    const right = Math.max(item.x1, item.x0 + textWidth(item.label, fontSize) + 4) + 4
    let row = ends.findIndex((end) => end <= item.x0)
    if (row < 0) {
      row = ends.length
      ends.push(right)
    } else ends[row] = right
    rows[i] = row
  }
  return { rows, count: ends.length }
}

/** Lays out the header of `entries` on the time scale `x`. */
export const layoutHeader = (entries: Entries, x: (at: number) => number): HeaderLayout => {
  const items = headerItems(entries, x)
  return { items, ...headerRows(items, headerFont) }
}

const renderItem = (item: HeaderItem, rowTop: number, lanesBottom: number): string =>
  element("g", { class: "header-item" }, [
    element(
      "text",
      {
        x: item.x0 + (item.bar ? 1 : 2),
        y: rowTop + 10,
        "font-size": headerFont,
        fill: item.color,
        "font-weight": item.bold ? "bold" : undefined
      },
      text(item.label)
    ),
    item.bar
      ? element("rect", {
          x: item.x0,
          y: rowTop + 12,
          width: Math.max(2, item.x1 - item.x0),
          height: 3,
          fill: item.color,
          "fill-opacity": 0.8
        })
      : element("line", {
          x1: item.x0,
          y1: rowTop + 12,
          x2: item.x0,
          y2: lanesBottom,
          stroke: item.color,
          "stroke-width": 0.8,
          "stroke-dasharray": "2 3",
          "stroke-opacity": 0.7
        })
  ])

/** Draws the header rows from `top` down; a group-wide mark's line runs down to `lanesBottom`. */
export const renderHeader = (header: HeaderLayout, top: number, lanesBottom: number): string =>
  element(
    "g",
    { class: "header" },
    header.items.map((item, i) => renderItem(item, top + (header.rows[i] ?? 0) * headerRowHeight, lanesBottom))
  )
