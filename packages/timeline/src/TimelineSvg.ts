import { stateClass } from "@lockstep/fsm"
import type { LaneGeometry } from "./LaneGeometry.js"
import { shortStateNames, stateLabel } from "./StateNames.js"
import { element, escapeXml, text, textWidth, tooltip } from "./Svg.js"
import type {
  ArcSpan,
  CorruptingWrites,
  Mark,
  Phase,
  Quarantine,
  Reset,
  Rollback,
  StateSpan,
  TimelineEntry,
  TimelineInput,
  TimelineState,
  Violation,
  Wait
} from "./TimelineInput.js"
import { formatDuration, makeTimeScale, type TimeScale, tickFont } from "./TimeScale.js"
import { layoutP2PColumn, renderP2PColumn } from "./TopologySvg.js"
import { renderReleases, renderWaits } from "./WaitSvg.js"

/** Options of `renderTimelineSvg`. */
export interface TimelineSvgOptions {
  /** Width of the picture in px (at least 480). Default 1200. */
  readonly width?: number | undefined
  /** Overrides the input's title. */
  readonly title?: string | undefined
  /** Height of one lane in px (at least 8). Default: from 40 for a few devices down to 12 for many. */
  readonly laneHeight?: number | undefined
  /**
   * Write on each dependency wait the device it waited for, where there is room (it is always in
   * the wait's tooltip, and the release is marked on that device's lane). Default true.
   */
  readonly waitLabels?: boolean | undefined
  /** Compress long idle stretches of time when the arcs would be too narrow to see. Default true. */
  readonly compressTime?: boolean | undefined
}

/** How a state is coloured: its P2P class, with ERROR and unknown set apart. */
type Tone = "initiating" | "quiesced" | "halted" | "error" | "unknown"

const toneOf = (state: TimelineState): Tone =>
  state === "ERROR" ? "error" : state === "UNKNOWN" ? "unknown" : stateClass(state)

const palette: Readonly<Record<Tone, { readonly fill: string; readonly tint: string; readonly ink: string }>> = {
  initiating: { fill: "#3f7cc0", tint: "#d6e4f5", ink: "#ffffff" },
  quiesced: { fill: "#eeb43f", tint: "#fbedc9", ink: "#3a2b00" },
  halted: { fill: "#6b7a8a", tint: "#dfe4ea", ink: "#ffffff" },
  error: { fill: "#8e3fb5", tint: "#ead8f3", ink: "#ffffff" },
  unknown: { fill: "#ffffff", tint: "#f1f1f1", ink: "#555555" }
}
const tones: ReadonlyArray<Tone> = ["initiating", "quiesced", "halted", "error", "unknown"]

const red = "#d62728"
const downtime = "#e8590c"
const phaseGray = "#7d8ca3"
const rollbackInk = "#6a3d9a"
const ink = "#222222"
const muted = "#666666"
const font = "sans-serif"

const margin = 14
/** Room before the run, px: every device is drawn there in its initial state, so the first arcs stand out. */
const leadPx = 16
const headerRow = 16
const legendRow = 20

const clamp = (value: number, low: number, high: number): number => Math.max(low, Math.min(high, value))

/** Every time an entry mentions. */
const timesOf = (e: TimelineEntry): ReadonlyArray<number> => {
  switch (e._tag) {
    case "Reset":
    case "Quarantine":
    case "Mark":
      return [e.at]
    case "Violation":
      return e.to === undefined ? [e.from] : [e.from, e.to]
    default:
      return [e.from, e.to]
  }
}

/** Every device an entry mentions. */
const devicesOf = (e: TimelineEntry): ReadonlyArray<string> => {
  switch (e._tag) {
    case "Phase":
    case "Rollback":
      return []
    case "Mark":
      return e.device === undefined ? [] : [e.device]
    case "Violation":
    case "CorruptingWrites":
      return [e.initiator, e.target]
    case "Wait":
      return e.waitedFor === undefined ? [e.device] : [e.device, e.waitedFor.device]
    default:
      return [e.device]
  }
}

const median = (values: ReadonlyArray<number>): number | undefined => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

/** Sorts entries by kind, keeping only those whose times are all finite numbers. */
interface Entries {
  readonly states: Array<StateSpan>
  readonly arcs: Array<ArcSpan>
  readonly waits: Array<Wait>
  readonly resets: Array<Reset>
  readonly quarantines: Array<Quarantine>
  readonly rollbacks: Array<Rollback>
  readonly phases: Array<Phase>
  readonly violations: Array<Violation>
  readonly corruptions: Array<CorruptingWrites>
  readonly marks: Array<Mark>
}

const sortEntries = (entries: ReadonlyArray<TimelineEntry>): Entries => {
  const out: Entries = {
    states: [],
    arcs: [],
    waits: [],
    resets: [],
    quarantines: [],
    rollbacks: [],
    phases: [],
    violations: [],
    corruptions: [],
    marks: []
  }
  for (const e of entries) {
    if (!timesOf(e).every(Number.isFinite)) continue
    switch (e._tag) {
      case "StateSpan":
        out.states.push(e)
        break
      case "ArcSpan":
        out.arcs.push(e)
        break
      case "Wait":
        out.waits.push(e)
        break
      case "Reset":
        out.resets.push(e)
        break
      case "Quarantine":
        out.quarantines.push(e)
        break
      case "Rollback":
        out.rollbacks.push(e)
        break
      case "Phase":
        out.phases.push(e)
        break
      case "Violation":
        out.violations.push(e)
        break
      case "CorruptingWrites":
        out.corruptions.push(e)
        break
      case "Mark":
        out.marks.push(e)
        break
    }
  }
  return out
}

/** A labelled item of the header rows above the lanes (phases, rollbacks, group-wide marks). */
interface HeaderItem {
  readonly x0: number
  readonly x1: number
  readonly label: string
  readonly color: string
  readonly bold: boolean
  /** Draw a bar under the label spanning `[x0, x1]`. */
  readonly bar: boolean
}

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

/** One entry of the legend: a 24×12 swatch and its text. */
interface LegendItem {
  readonly key: string
  readonly swatch: (x: number, y: number) => string
  readonly label: string
}

const patternDefs = (): string => {
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
  return element("defs", {}, [
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
}

/**
 * Draws a group's timeline as a standalone SVG document: a time axis in ms, one lane per
 * device with its states coloured by P2P class (initiating, quiesced, halted, ERROR), the arcs
 * in flight as hatched bars, dependency waits as dotted lines (with a thin arrow from the arc
 * each waited for), phase windows as bands across every lane (the switchover/downtime window
 * highlighted), rollbacks, resets, failures, and P2P invariant violations in red on the
 * target's lane; a legend at the bottom. No fonts, scripts or images are referenced, and every
 * piece of text is escaped. Lanes shrink as devices are added, and long idle stretches of time
 * are compressed (shown as breaks on the axis) when the arcs would otherwise be too narrow.
 */
export const renderTimelineSvg = (input: TimelineInput, options: TimelineSvgOptions = {}): string => {
  const entries = sortEntries(input.entries)
  const all: ReadonlyArray<TimelineEntry> = Object.values(entries).flat()

  // Lanes: the input's devices, then any device only entries mention.
  const lanes = input.devices.map((d) => ({ id: d.id, kind: d.kind }))
  const laneIndex = new Map(lanes.map((d, i) => [d.id, i]))
  for (const e of all)
    for (const id of devicesOf(e))
      if (!laneIndex.has(id)) {
        laneIndex.set(id, lanes.length)
        lanes.push({ id, kind: "" })
      }

  const times = all.flatMap(timesOf)
  const earliest = times.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY)
  const latest = times.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY)
  const start = input.start ?? (times.length === 0 ? 0 : earliest)
  const end = Math.max(start, input.end ?? (times.length === 0 ? start + 1 : latest))

  // Horizontal layout.
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
  // The P2P topology sits between the labels and the plot.
  const p2pColumn = layoutP2PColumn(input.p2p, laneIndex)
  const p2pX0 = margin + labelWidth
  const plotX0 = p2pX0 + p2pColumn.width
  const plotX1 = width - margin - 6
  const arcDurations = entries.arcs.map((a) => a.to - a.from).filter((d) => d > 0)
  const scale: TimeScale = makeTimeScale({
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
    typicalArcMs: median(arcDurations),
    compress: options.compressTime ?? true
  })
  const x = scale.x
  const span = (from: number, to: number, min = 1) => {
    const x0 = x(from)
    return { x0, w: Math.max(min, x(to) - x0) }
  }
  /** Where a label of `[from, to]` goes: its widest stretch outside any compressed one. */
  const labelSlot = (from: number, to: number) => {
    let best = { x0: x(from), w: 0 }
    for (const s of scale.segments) {
      if (s.compressed) continue
      const a = Math.max(from, s.t0)
      const b = Math.min(to, s.t1)
      if (b > a && x(b) - x(a) > best.w) best = { x0: x(a), w: x(b) - x(a) }
    }
    return best
  }

  // Header rows: phases, rollbacks and group-wide marks, each label in the first row it fits.
  const headerFont = 10
  const globalMarks = entries.marks.filter((m) => m.device === undefined)
  const phaseItems: Array<HeaderItem> = entries.phases.map((p) => ({
    x0: x(p.from),
    x1: x(p.to),
    label: p.label,
    color: p.emphasis === "downtime" ? downtime : "#4a5a70",
    bold: p.emphasis === "downtime",
    bar: true
  }))
  const rollbackItems: Array<HeaderItem> = entries.rollbacks.map((r) => ({
    x0: x(r.from),
    x1: x(r.to),
    label: r.ok ? "rollback" : "rollback (incomplete)",
    color: rollbackInk,
    bold: true,
    bar: true
  }))
  const markItems: Array<HeaderItem> = globalMarks.map((m) => ({
    x0: x(m.at),
    x1: x(m.at),
    label: m.label,
    color: ink,
    bold: false,
    bar: false
  }))
  const headerItems = [...phaseItems, ...rollbackItems, ...markItems]
  const header = headerRows(headerItems, headerFont)

  // Vertical layout.
  const title = options.title ?? input.title
  let y = margin
  const titleY = y + 14
  if (title !== undefined) y += 22
  const summaryY = y + 11
  y += 20
  const headerTop = y
  y += header.count * headerRow + (header.count > 0 ? 4 : 0)
  const axisTop = y + 16
  const lanesTop = axisTop + 4
  const lanesBottom = lanesTop + lanes.length * laneHeight
  const axisBottom = lanesBottom + 4
  y = axisBottom + 26

  const laneTop = (id: string) => lanesTop + (laneIndex.get(id) ?? 0) * laneHeight
  const barPad = Math.max(1.5, laneHeight * 0.14)
  const barHeight = laneHeight - 2 * barPad
  const centre = (id: string) => laneTop(id) + laneHeight / 2
  const geometry: LaneGeometry = { x, laneTop, laneHeight, barPad, barHeight, laneFont }

  const out: Array<string> = []

  // Lanes: background stripes and labels.
  const laneRows = lanes.map((lane, i) => {
    const top = lanesTop + i * laneHeight
    const kind =
      showKinds && lane.kind !== ""
        ? element(
            "text",
            { x: p2pX0 - 8, y: top + laneHeight / 2 + 3, "font-size": 9, fill: muted, "text-anchor": "end" },
            text(lane.kind.length > 8 ? `${lane.kind.slice(0, 7)}…` : lane.kind)
          )
        : ""
    const label = lane.id.length > labelChars ? `${lane.id.slice(0, labelChars - 1)}…` : lane.id
    return element("g", { class: "lane", "data-device": lane.id }, [
      element("rect", {
        x: margin,
        y: top,
        width: plotX1 - margin,
        height: laneHeight,
        fill: i % 2 === 0 ? "#f6f7f9" : "#ffffff"
      }),
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
      kind
    ])
  })
  out.push(element("g", { class: "lanes" }, laneRows))
  // Phase and rollback windows: bands behind the bars (state colours stay true), edges over them.
  const windows = [
    ...entries.phases.map((p) => ({
      from: p.from,
      to: p.to,
      color: p.emphasis === "downtime" ? downtime : phaseGray,
      fill: p.emphasis === "downtime" ? downtime : phaseGray,
      opacity: p.emphasis === "downtime" ? 0.28 : 0.14,
      strong: p.emphasis === "downtime",
      group: { class: "phase", "data-emphasis": p.emphasis },
      title: `${p.label}: ${formatDuration(p.to - p.from)}`
    })),
    ...entries.rollbacks.map((r) => ({
      from: r.from,
      to: r.to,
      color: rollbackInk,
      fill: "url(#rollback-hatch)",
      opacity: 0.6,
      strong: true,
      group: { class: "rollback", "data-ok": r.ok ? "true" : "false" },
      title: `rollback${r.ok ? "" : " (incomplete)"}: ${r.cause}`
    }))
  ]
  const windowBands = windows.map((w) => {
    const { x0, w: bandWidth } = span(w.from, w.to, 1)
    return element("g", w.group, [
      tooltip(w.title),
      element("rect", {
        x: x0,
        y: lanesTop,
        width: bandWidth,
        height: lanesBottom - lanesTop,
        fill: w.fill,
        "fill-opacity": w.opacity
      })
    ])
  })
  const windowEdges = windows.flatMap((w) =>
    [x(w.from), x(w.to)].map((ex) =>
      element("line", {
        x1: ex,
        y1: lanesTop,
        x2: ex,
        y2: lanesBottom,
        stroke: w.color,
        "stroke-width": w.strong ? 1.4 : 0.9,
        "stroke-dasharray": w.strong ? undefined : "4 3"
      })
    )
  )
  out.push(element("g", { class: "windows" }, windowBands))

  out.push(
    element(
      "g",
      { class: "grid" },
      scale.ticks.map((t) =>
        element("line", { x1: t.x, y1: lanesTop, x2: t.x, y2: lanesBottom, stroke: "#dcdcdc", "stroke-width": 0.8 })
      )
    )
  )

  // States, then arcs on top of them.
  const leads = input.devices.map((device) => {
    const spans = [...entries.states, ...entries.arcs].filter((e) => e.device === device.id)
    const first = spans.reduce((t, e) => Math.min(t, e.from), end)
    return element("rect", {
      class: "initial",
      "data-device": device.id,
      x: plotX0,
      y: laneTop(device.id) + barPad,
      width: x(first) - plotX0,
      height: barHeight,
      fill: palette[toneOf(device.initial)].fill,
      "fill-opacity": 0.75,
      stroke: device.initial === "UNKNOWN" ? "#999999" : undefined,
      "stroke-dasharray": device.initial === "UNKNOWN" ? "3 2" : undefined
    })
  })
  out.push(element("g", { class: "initial-states" }, leads))
  /** States whose bars carry their short name: the legend spells them out. */
  const shortNames = new Set<TimelineState>()
  /** Where state names are written, so that a wait's label goes beside them. */
  const occupied: Array<{ readonly device: string; readonly x0: number; readonly x1: number }> = []
  const stateBars = entries.states.map((s) => {
    const { x0, w } = span(s.from, s.to, 0.5)
    const tone = palette[toneOf(s.state)]
    const top = laneTop(s.device) + barPad
    const slot = labelSlot(s.from, s.to)
    const label = barHeight >= 9 ? stateLabel(s.state, slot.w - 2, laneFont) : undefined
    if (label?.short === true) shortNames.add(s.state)
    // A state the device waits in keeps its name at the left, leaving the rest to the wait's label.
    const waitedIn = entries.waits.some((w) => w.device === s.device && w.from < s.to && w.to > s.from)
    const labelWidth = label === undefined ? 0 : textWidth(label.text, label.fontSize)
    const labelX = waitedIn ? slot.x0 + 2 : slot.x0 + slot.w / 2
    if (label !== undefined)
      occupied.push({
        device: s.device,
        x0: waitedIn ? labelX : labelX - labelWidth / 2,
        x1: waitedIn ? labelX + labelWidth : labelX + labelWidth / 2
      })
    return element("g", { class: "state", "data-device": s.device, "data-state": s.state }, [
      tooltip(`${s.device}: ${s.state}, ${formatDuration(s.to - s.from)}`),
      element("rect", {
        x: x0,
        y: top,
        width: w,
        height: barHeight,
        fill: tone.fill,
        stroke: s.state === "UNKNOWN" ? "#999999" : undefined,
        "stroke-dasharray": s.state === "UNKNOWN" ? "3 2" : undefined
      }),
      label === undefined
        ? ""
        : element(
            "text",
            {
              class: "state-label",
              x: labelX,
              y: top + barHeight / 2 + label.fontSize * 0.36,
              "font-size": label.fontSize,
              fill: tone.ink,
              "text-anchor": waitedIn ? "start" : "middle"
            },
            text(label.text)
          )
    ])
  })
  out.push(element("g", { class: "states" }, stateBars))

  const arcBars = entries.arcs.map((a) => {
    const { x0, w } = span(a.from, a.to, 1.5)
    const tone = toneOf(a.arc.to)
    const top = laneTop(a.device) + barPad
    const failed = a.outcome === "failed"
    const status =
      a.outcome === "done"
        ? ""
        : a.outcome === "failed"
          ? ` failed: ${a.error ?? "unknown error"}`
          : " (still in flight)"
    const size = Math.min(barHeight, 10) / 2
    // Inside the arc's end, clear of a reset drawn just after it.
    const cx = x0 + w - size - 1
    const cy = top + barHeight / 2
    return element("g", { class: "arc", "data-device": a.device, "data-outcome": a.outcome }, [
      tooltip(`${a.id} ${a.device}: ${a.arc.from} → ${a.arc.to}, ${formatDuration(a.to - a.from)}${status}`),
      element("rect", {
        x: x0,
        y: top,
        width: w,
        height: barHeight,
        fill: `url(#arc-${tone})`,
        stroke: failed ? red : palette[tone].fill,
        "stroke-width": failed ? 1.5 : 0.8,
        "stroke-dasharray": a.outcome === "running" ? "3 2" : undefined
      }),
      failed
        ? element("path", {
            class: "failure",
            d: `M${cx - size},${cy - size} L${cx + size},${cy + size} M${cx - size},${cy + size} L${cx + size},${cy - size}`,
            stroke: red,
            "stroke-width": 2.2,
            "stroke-linecap": "round"
          })
        : ""
    ])
  })
  out.push(element("g", { class: "arcs" }, arcBars))
  out.push(element("g", { class: "window-edges" }, windowEdges))

  // Waits, each on its own lane, named for the device it waited for; that device's release.
  const released = entries.waits.some((w) => w.waitedFor !== undefined)
  out.push(
    element("g", { class: "waits" }, [
      renderWaits(entries.waits, geometry, options.waitLabels ?? true, occupied),
      renderReleases(entries.waits, geometry)
    ])
  )
  out.push(renderP2PColumn(p2pColumn, p2pX0, axisTop - 6, centre))

  // Resets, quarantines, marks on one lane.
  const markSize = Math.min(barHeight / 2, 5)
  const deviceMarks = [
    ...entries.resets.map((r) =>
      element("g", { class: "reset", "data-device": r.device }, [
        tooltip(`${r.device} reset from ${r.from}`),
        element("circle", {
          cx: x(r.at) + markSize + 1,
          cy: centre(r.device),
          r: markSize,
          fill: "#ffffff",
          stroke: ink,
          "stroke-width": 1.6
        })
      ])
    ),
    ...entries.quarantines.map((q) =>
      element("g", { class: "quarantine", "data-device": q.device }, [
        tooltip(`${q.device} quarantined in ERROR`),
        element("rect", {
          x: x(q.at) - markSize,
          y: centre(q.device) - markSize,
          width: 2 * markSize,
          height: 2 * markSize,
          fill: ink
        })
      ])
    ),
    ...entries.marks
      .filter((m) => m.device !== undefined)
      .map((m) => {
        const device = m.device ?? ""
        const mx = x(m.at)
        const top = laneTop(device)
        return element("g", { class: "mark", "data-device": device }, [
          tooltip(`${device}: ${m.label}`),
          element("path", {
            d: `M${mx - 4},${top} L${mx + 4},${top} L${mx},${top + Math.min(7, laneHeight / 2)} z`,
            fill: ink
          })
        ])
      })
  ]
  out.push(element("g", { class: "device-marks" }, deviceMarks))

  // Violations: red on the target's lane, a marker where each began, a line from its initiator.
  const corruptionBands = entries.corruptions.map((c) => {
    const { x0, w } = span(c.from, c.to, 2)
    return element("g", { class: "corrupting-writes", "data-initiator": c.initiator, "data-target": c.target }, [
      tooltip(`${c.writes} write(s) ${c.initiator} → ${c.target} landed while ${c.target} could be halted`),
      element("rect", {
        x: x0,
        y: laneTop(c.target) + barPad,
        width: w,
        height: barHeight,
        fill: "url(#corrupt-hatch)",
        "fill-opacity": 0.8
      })
    ])
  })
  const violationMarks = entries.violations.map((v) => {
    const open = v.to === undefined
    const { x0, w } = span(v.from, v.to ?? end, 5)
    const top = laneTop(v.target)
    const tri = Math.min(5, laneHeight / 2.5)
    return element("g", { class: "violation", "data-initiator": v.initiator, "data-target": v.target }, [
      tooltip(open ? `${v.description} (still open at the end)` : v.description),
      element("line", {
        x1: x0,
        y1: centre(v.initiator),
        x2: x0,
        y2: top + laneHeight / 2,
        stroke: red,
        "stroke-width": 1,
        "stroke-dasharray": "3 2"
      }),
      element("circle", { cx: x0, cy: centre(v.initiator), r: 2.2, fill: red }),
      // A solid strip along the top of the lane and an outline: the target's state stays readable.
      element("rect", { x: x0, y: top + 0.5, width: w, height: barPad + barHeight * 0.2, fill: red }),
      element("rect", {
        x: x0,
        y: top + 0.5,
        width: w,
        height: laneHeight - 1,
        fill: red,
        "fill-opacity": 0.12,
        stroke: red,
        "stroke-width": 1.5
      }),
      element("path", { d: `M${x0 - tri},${top - tri} L${x0 + tri},${top - tri} L${x0},${top + tri} z`, fill: red })
    ])
  })
  out.push(element("g", { class: "violations" }, [...corruptionBands, ...violationMarks]))

  // Compressed stretches: hatched over everything, zigzag edges, the time they stand for.
  const breaks = scale.segments.filter((s) => s.compressed)
  const zigzag = (bx: number, y0: number, y1: number) => {
    const points: Array<string> = []
    for (let yy = y0, k = 0; yy <= y1; yy += 4, k++) points.push(`${bx + (k % 2 === 0 ? -2 : 2)},${yy}`)
    return element("polyline", { points: points.join(" "), fill: "none", stroke: "#9a9a9a", "stroke-width": 1 })
  }
  out.push(
    element(
      "g",
      { class: "breaks" },
      breaks.map((b) =>
        element("g", { class: "break" }, [
          tooltip(`${formatDuration(b.t1 - b.t0)} of idle time, compressed`),
          element("rect", {
            x: b.x0 + 2,
            y: axisTop - 6,
            width: b.x1 - b.x0 - 4,
            height: axisBottom - axisTop + 12,
            fill: "url(#break-hatch)",
            "fill-opacity": 0.85
          }),
          zigzag(b.x0 + 2, axisTop - 6, axisBottom + 6),
          zigzag(b.x1 - 2, axisTop - 6, axisBottom + 6),
          element(
            "text",
            {
              x: (b.x0 + b.x1) / 2,
              y: axisBottom + 16,
              "font-size": 9,
              fill: muted,
              "text-anchor": "middle"
            },
            text(`≈${formatDuration(b.t1 - b.t0)}`)
          )
        ])
      )
    )
  )

  // Header rows and their bars; group-wide marks drop a line through the lanes.
  const headerMarkup = headerItems.map((item, i) => {
    const rowTop = headerTop + (header.rows[i] ?? 0) * headerRow
    const parts: Array<string> = [
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
      )
    ]
    if (item.bar)
      parts.push(
        element("rect", {
          x: item.x0,
          y: rowTop + 12,
          width: Math.max(2, item.x1 - item.x0),
          height: 3,
          fill: item.color,
          "fill-opacity": 0.8
        })
      )
    else
      parts.push(
        element("line", {
          x1: item.x0,
          y1: rowTop + 12,
          x2: item.x0,
          y2: lanesBottom,
          stroke: item.color,
          "stroke-width": 0.8,
          "stroke-dasharray": "2 3",
          "stroke-opacity": 0.7
        })
      )
    return element("g", { class: "header-item" }, parts)
  })
  out.push(element("g", { class: "header" }, headerMarkup))

  // Axes at the top and bottom of the lanes.
  const axis = (axisY: number, labelsAbove: boolean) => {
    const lines = scale.segments
      .filter((s) => !s.compressed)
      .map((s) => element("line", { x1: s.x0, y1: axisY, x2: s.x1, y2: axisY, stroke: ink, "stroke-width": 1 }))
    const ticks = scale.ticks.map((t) => {
      const labelWidth = textWidth(t.label, tickFont)
      const anchor = t.x + labelWidth / 2 > width - 2 ? "end" : t.x - labelWidth / 2 < plotX0 - 10 ? "start" : "middle"
      return element("g", {}, [
        element("line", {
          x1: t.x,
          y1: axisY,
          x2: t.x,
          y2: labelsAbove ? axisY - 4 : axisY + 4,
          stroke: ink,
          "stroke-width": 1
        }),
        element(
          "text",
          { x: t.x, y: labelsAbove ? axisY - 6 : axisY + 14, "font-size": tickFont, fill: ink, "text-anchor": anchor },
          text(t.label)
        )
      ])
    })
    return element("g", { class: labelsAbove ? "axis axis-top" : "axis axis-bottom" }, [...lines, ...ticks])
  }
  out.push(axis(axisTop, true), axis(axisBottom, false))

  // Legend.
  const failed = entries.arcs.filter((a) => a.outcome === "failed").length
  const violationCount = entries.violations.length
  const solid = (fill: string, stroke?: string) => (sx: number, sy: number) =>
    element("rect", {
      x: sx,
      y: sy,
      width: 24,
      height: 12,
      fill,
      stroke,
      "stroke-dasharray": stroke === undefined ? undefined : "3 2"
    })
  const band = (fill: string, opacity: number, stroke: string) => (sx: number, sy: number) =>
    element("rect", {
      x: sx,
      y: sy,
      width: 24,
      height: 12,
      fill,
      "fill-opacity": opacity,
      stroke,
      "stroke-width": 1
    })
  const legendItems: Array<LegendItem> = [
    { key: "initiating", swatch: solid(palette.initiating.fill), label: "initiating (RUNNING, PRE_COPY)" },
    { key: "quiesced", swatch: solid(palette.quiesced.fill), label: "quiesced (RUNNING_P2P, PRE_COPY_P2P)" },
    { key: "halted", swatch: solid(palette.halted.fill), label: "halted (STOP, STOP_COPY, RESUMING)" },
    { key: "error", swatch: solid(palette.error.fill), label: "ERROR (may still DMA)" },
    ...(entries.states.some((s) => s.state === "UNKNOWN") || input.devices.some((d) => d.initial === "UNKNOWN")
      ? [{ key: "unknown", swatch: solid("#ffffff", "#999999"), label: "unknown until read back" }]
      : []),
    {
      key: "arc",
      swatch: (sx, sy) =>
        element("rect", {
          x: sx,
          y: sy,
          width: 24,
          height: 12,
          fill: "url(#arc-halted)",
          stroke: palette.halted.fill,
          "stroke-width": 0.8
        }),
      label: "arc in flight (hatched in its target's colour)"
    },
    ...(failed > 0
      ? [
          {
            key: "failure",
            swatch: (sx: number, sy: number) =>
              element("path", {
                d: `M${sx + 7},${sy + 1} L${sx + 17},${sy + 11} M${sx + 7},${sy + 11} L${sx + 17},${sy + 1}`,
                stroke: red,
                "stroke-width": 2.2,
                "stroke-linecap": "round"
              }),
            label: `arc failed (${failed})`
          }
        ]
      : []),
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
    ...(released
      ? [
          {
            key: "release",
            swatch: (sx: number, sy: number) =>
              element("path", {
                d: `M${sx + 12},${sy + 2} L${sx + 16},${sy + 6} L${sx + 12},${sy + 10} L${sx + 8},${sy + 6} z`,
                fill: "#ffffff",
                stroke: ink,
                "stroke-width": 1.2
              }),
            label: "the arc whose end released waiting devices (a line through their lanes)"
          }
        ]
      : []),
    ...(p2pColumn.items.some((i) => i.kind === "domain")
      ? [
          {
            key: "p2p-domain",
            swatch: (sx: number, sy: number) =>
              [
                element("line", {
                  x1: sx + 4,
                  y1: sy + 6,
                  x2: sx + 20,
                  y2: sy + 6,
                  stroke: "#444444",
                  "stroke-width": 1.2
                }),
                element("circle", { cx: sx + 4, cy: sy + 6, r: 2.4, fill: "#444444" }),
                element("circle", { cx: sx + 20, cy: sy + 6, r: 2.4, fill: "#444444" })
              ].join(""),
            label: "P2P domain: each member may write into every other"
          }
        ]
      : []),
    ...(p2pColumn.items.some((i) => i.kind === "edges")
      ? [
          {
            key: "p2p-edges",
            swatch: (sx: number, sy: number) =>
              [
                element("line", {
                  x1: sx + 4,
                  y1: sy + 6,
                  x2: sx + 22,
                  y2: sy + 6,
                  stroke: "#444444",
                  "stroke-width": 1.2,
                  "marker-end": "url(#arrow)"
                }),
                element("circle", { cx: sx + 4, cy: sy + 6, r: 2.8, fill: "#444444" })
              ].join(""),
            label: "P2P edge: initiator (dot) may write into target (arrow)"
          }
        ]
      : []),
    ...(entries.phases.some((p) => p.emphasis === "normal")
      ? [{ key: "phase", swatch: band(phaseGray, 0.15, phaseGray), label: "phase" }]
      : []),
    ...(entries.phases.some((p) => p.emphasis === "downtime")
      ? [{ key: "downtime", swatch: band(downtime, 0.25, downtime), label: "switchover (downtime)" }]
      : []),
    ...(entries.rollbacks.length > 0
      ? [{ key: "rollback", swatch: band("url(#rollback-hatch)", 0.6, rollbackInk), label: "rollback" }]
      : []),
    ...(entries.resets.length > 0
      ? [
          {
            key: "reset",
            swatch: (sx: number, sy: number) =>
              element("circle", { cx: sx + 12, cy: sy + 6, r: 5, fill: "#ffffff", stroke: ink, "stroke-width": 1.6 }),
            label: "reset"
          }
        ]
      : []),
    ...(entries.quarantines.length > 0
      ? [
          {
            key: "quarantine",
            swatch: (sx: number, sy: number) =>
              element("rect", { x: sx + 7, y: sy + 1, width: 10, height: 10, fill: ink }),
            label: "quarantined"
          }
        ]
      : []),
    ...(violationCount > 0
      ? [
          {
            key: "violation",
            swatch: (sx: number, sy: number) =>
              [
                element("rect", { x: sx, y: sy, width: 24, height: 3.5, fill: red }),
                element("rect", {
                  x: sx,
                  y: sy,
                  width: 24,
                  height: 12,
                  fill: red,
                  "fill-opacity": 0.12,
                  stroke: red,
                  "stroke-width": 1.5
                })
              ].join(""),
            label: `P2P violation on the target's lane, from its initiator (${violationCount})`
          }
        ]
      : input.invariantChecked === true
        ? [
            {
              key: "no-violation",
              swatch: (sx: number, sy: number) =>
                element("path", {
                  d: `M${sx + 5},${sy + 6} L${sx + 10},${sy + 11} L${sx + 19},${sy + 1}`,
                  fill: "none",
                  stroke: "#2e8b57",
                  "stroke-width": 2.2
                }),
              label: "no P2P violation"
            }
          ]
        : []),
    ...(entries.corruptions.length > 0
      ? [{ key: "corrupting-writes", swatch: band("url(#corrupt-hatch)", 1, red), label: "corrupting P2P writes" }]
      : []),
    ...(breaks.length > 0
      ? [{ key: "break", swatch: solid("url(#break-hatch)"), label: "idle time, compressed" }]
      : []),
    ...(shortNames.size > 0
      ? [
          {
            key: "abbreviations",
            swatch: () => "",
            label: [...shortNames].map((state) => `${shortStateNames[state]} = ${state}`).join(", ")
          }
        ]
      : [])
  ]
  const legendMarkup: Array<string> = []
  let lx = margin
  let ly = y
  for (const item of legendItems) {
    const itemWidth = 30 + textWidth(item.label, 10) + 16
    if (lx + itemWidth > width - margin && lx > margin) {
      lx = margin
      ly += legendRow
    }
    legendMarkup.push(
      element("g", { class: "legend-item", "data-item": item.key }, [
        item.swatch(lx, ly),
        element("text", { x: lx + 30, y: ly + 10, "font-size": 10, fill: ink }, text(item.label))
      ])
    )
    lx += itemWidth
  }
  const height = Math.ceil(ly + legendRow + margin)

  // Title and a one-line summary.
  const waitCount = entries.waits.length
  const summary = [
    `${lanes.length} device${lanes.length === 1 ? "" : "s"}`,
    `${entries.arcs.length} arc${entries.arcs.length === 1 ? "" : "s"}${failed > 0 ? ` (${failed} failed)` : ""}`,
    `${waitCount} dependency wait${waitCount === 1 ? "" : "s"}`,
    ...(violationCount > 0 || input.invariantChecked === true
      ? [`${violationCount} P2P violation${violationCount === 1 ? "" : "s"}`]
      : []),
    formatDuration(end - start)
  ].join(" · ")
  const top = [
    title === undefined
      ? ""
      : element(
          "text",
          { class: "title", x: margin, y: titleY, "font-size": 15, "font-weight": "bold", fill: ink },
          text(title)
        ),
    element("text", { class: "summary", x: margin, y: summaryY, "font-size": 11, fill: muted }, text(summary))
  ]

  return [
    `<?xml version="1.0" encoding="UTF-8"?>\n`,
    element(
      "svg",
      {
        xmlns: "http://www.w3.org/2000/svg",
        width,
        height,
        viewBox: `0 0 ${width} ${height}`,
        "font-family": font
      },
      [
        title === undefined ? "" : element("title", {}, escapeXml(title)),
        patternDefs(),
        element("rect", { width, height, fill: "#ffffff" }),
        ...top,
        ...out,
        element("g", { class: "legend" }, legendMarkup)
      ]
    ),
    "\n"
  ].join("")
}
