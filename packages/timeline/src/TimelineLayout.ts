import { type HeaderLayout, headerRowHeight, layoutHeader } from "./HeaderSvg.js"
import type { LaneGeometry } from "./LaneGeometry.js"
import { margin } from "./Palette.js"
import { textWidth } from "./Svg.js"
import { devicesOf, type Entries, timesOf } from "./TimelineEntries.js"
import type { TimelineEntry, TimelineInput } from "./TimelineInput.js"
import type { TimelineSvgOptions } from "./TimelineSvg.js"
import { makeTimeScale, type Stretch, stretchOf, type TimeScale } from "./TimeScale.js"
import { layoutP2PColumn, type P2PColumn } from "./TopologySvg.js"

/**
 * Where everything of a timeline picture goes, worked out once before anything is drawn: the
 * lanes, the columns left of the plot (labels, the P2P topology), the time scale, and the rows
 * from the title down to the legend. Every renderer of an element reads it.
 */

/** One lane: a device, with its kind when the input named it. */
export interface Lane {
  readonly id: string
  readonly kind: string
}

export interface TimelineLayout extends LaneGeometry {
  readonly lanes: ReadonlyArray<Lane>
  readonly laneIndex: ReadonlyMap<string, number>
  /** The times the plot spans, ms. */
  readonly start: number
  readonly end: number
  readonly width: number
  readonly title: string | undefined
  /** Lane labels longer than this many characters are cut. */
  readonly labelChars: number
  /** Whether lanes show their device's kind beside the label. */
  readonly showKinds: boolean
  readonly p2pColumn: P2PColumn
  /** The left edge of the P2P column; the plot's left and right edges. */
  readonly p2pX0: number
  readonly plotX0: number
  readonly plotX1: number
  readonly scale: TimeScale
  readonly header: HeaderLayout
  readonly titleY: number
  readonly summaryY: number
  readonly headerTop: number
  readonly axisTop: number
  readonly lanesTop: number
  readonly lanesBottom: number
  readonly axisBottom: number
  readonly legendTop: number
  /** The middle of a device's lane. */
  readonly centre: (device: string) => number
  /** Where `[from, to]` is drawn, at least `min` px wide. */
  readonly span: (from: number, to: number, min?: number) => Stretch
  /** Where a label of `[from, to]` goes: its widest stretch outside any compressed one. */
  readonly labelSlot: (from: number, to: number) => Stretch
}

/** Room before the run, px: every device is drawn there in its initial state, so the first arcs stand out. */
const leadPx = 16

const clamp = (value: number, low: number, high: number): number => Math.max(low, Math.min(high, value))

const median = (values: ReadonlyArray<number>): number | undefined => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/** The lanes: the input's devices, then any device only entries mention. */
const lanesOf = (input: TimelineInput, all: ReadonlyArray<TimelineEntry>) => {
  const lanes: Array<Lane> = input.devices.map((d) => ({ id: d.id, kind: d.kind }))
  const laneIndex = new Map(lanes.map((d, i) => [d.id, i]))
  for (const e of all)
    for (const id of devicesOf(e))
      if (!laneIndex.has(id)) {
        laneIndex.set(id, lanes.length)
        lanes.push({ id, kind: "" })
      }
  return { lanes, laneIndex }
}

/** The times the plot spans: the input's, else the first and last an entry mentions. */
const timeSpanOf = (input: TimelineInput, all: ReadonlyArray<TimelineEntry>) => {
  const times = all.flatMap(timesOf)
  const earliest = times.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY)
  const latest = times.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY)
  const start = input.start ?? (times.length === 0 ? 0 : earliest)
  const end = Math.max(start, input.end ?? (times.length === 0 ? start + 1 : latest))
  return { start, end }
}

/** The columns from left to right: lane labels (and kinds), the P2P topology, the plot. */
const columnsOf = (
  input: TimelineInput,
  lanes: ReadonlyArray<Lane>,
  laneIndex: ReadonlyMap<string, number>,
  options: TimelineSvgOptions
) => {
  const width = Math.max(480, options.width ?? 1200)
  const laneHeight = options.laneHeight ?? clamp(Math.round(480 / Math.max(1, lanes.length)), 12, 40)
  const laneFont = clamp(Math.round(laneHeight * 0.55), 8, 12)
  const labelChars = clamp(
    lanes.reduce((n, l) => Math.max(n, l.id.length), 4),
    4,
    28
  )
  const showKinds = laneHeight >= 16 && lanes.some((l) => l.kind !== "")
  const kindChars = showKinds ? lanes.reduce((n, l) => Math.max(n, Math.min(8, l.kind.length)), 0) : 0
  const labelWidth =
    textWidth("x".repeat(labelChars), laneFont) + (showKinds ? textWidth("x".repeat(kindChars), 9) + 10 : 0) + 12
  const p2pColumn = layoutP2PColumn(input.p2p, laneIndex)
  const p2pX0 = margin + labelWidth
  const plotX0 = p2pX0 + p2pColumn.width
  const plotX1 = width - margin - 6
  return { width, laneHeight, laneFont, labelChars, showKinds, p2pColumn, p2pX0, plotX0, plotX1 }
}

/** The time scale over the plot, compressing idle stretches between what happens. */
const timeScaleOf = (
  entries: Entries,
  { start, end }: { readonly start: number; readonly end: number },
  { plotX0, plotX1 }: { readonly plotX0: number; readonly plotX1: number },
  compress: boolean
): TimeScale =>
  makeTimeScale({
    start,
    end,
    x0: plotX0 + leadPx,
    width: plotX1 - plotX0 - leadPx,
    activity: [
      ...entries.arcs.map((a) => [a.from, a.to] as const),
      ...entries.waits.map((w) => [w.from, w.to] as const),
      ...entries.violations.map((v) => [v.from, v.to ?? v.from] as const),
      ...entries.corruptions.map((c) => [c.from, c.to] as const),
      ...entries.resets.map((r) => [r.at, r.at] as const),
      ...entries.quarantines.map((q) => [q.at, q.at] as const),
      ...entries.marks.map((m) => [m.at, m.at] as const),
      // Window edges split idle time, so each phase of a long run is compressed on its own.
      ...[...entries.phases, ...entries.rollbacks].flatMap((p) => [[p.from, p.from] as const, [p.to, p.to] as const])
    ],
    typicalArcMs: median(entries.arcs.map((a) => a.to - a.from).filter((d) => d > 0)),
    compress
  })

/** The rows from the top down: title, summary, header rows, the top axis, the lanes, the bottom axis, the legend. */
const rowsOf = (title: string | undefined, headerCount: number, laneCount: number, laneHeight: number) => {
  let y = margin
  const titleY = y + 14
  if (title !== undefined) y += 22
  const summaryY = y + 11
  y += 20
  const headerTop = y
  y += headerCount * headerRowHeight + (headerCount > 0 ? 4 : 0)
  const axisTop = y + 16
  const lanesTop = axisTop + 4
  const lanesBottom = lanesTop + laneCount * laneHeight
  const axisBottom = lanesBottom + 4
  return { titleY, summaryY, headerTop, axisTop, lanesTop, lanesBottom, axisBottom, legendTop: axisBottom + 26 }
}

/** Lays out the picture of `input`, whose entries are `entries`. */
export const layoutTimeline = (input: TimelineInput, entries: Entries, options: TimelineSvgOptions): TimelineLayout => {
  const all: ReadonlyArray<TimelineEntry> = Object.values(entries).flat()
  const { lanes, laneIndex } = lanesOf(input, all)
  const time = timeSpanOf(input, all)
  const columns = columnsOf(input, lanes, laneIndex, options)
  const scale = timeScaleOf(entries, time, columns, options.compressTime ?? true)
  const x = scale.x
  const span = (from: number, to: number, min = 1): Stretch => stretchOf(scale, from, to, min)
  const labelSlot = (from: number, to: number): Stretch => {
    let best = { x0: x(from), w: 0 }
    for (const s of scale.segments) {
      if (s.compressed) continue
      const a = Math.max(from, s.t0)
      const b = Math.min(to, s.t1)
      if (b > a && x(b) - x(a) > best.w) best = { x0: x(a), w: x(b) - x(a) }
    }
    return best
  }
  const header = layoutHeader(entries, x)
  const title = options.title ?? input.title
  const { laneHeight } = columns
  const rows = rowsOf(title, header.count, lanes.length, laneHeight)
  const laneTop = (id: string) => rows.lanesTop + (laneIndex.get(id) ?? 0) * laneHeight
  const barPad = Math.max(1.5, laneHeight * 0.14)
  return {
    ...columns,
    ...time,
    ...rows,
    lanes,
    laneIndex,
    scale,
    header,
    title,
    x,
    laneTop,
    barPad,
    barHeight: laneHeight - 2 * barPad,
    centre: (id: string) => laneTop(id) + laneHeight / 2,
    span,
    labelSlot
  }
}
