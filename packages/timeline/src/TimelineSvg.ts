import { arcLegend, renderArcs } from "./ArcSvg.js"
import { renderAxes, renderGrid } from "./AxisSvg.js"
import { breakLegend, renderBreaks } from "./BreakSvg.js"
import { renderHeader } from "./HeaderSvg.js"
import { renderLanes } from "./LaneSvg.js"
import { renderLegend } from "./LegendSvg.js"
import { deviceMarkLegend, renderDeviceMarks } from "./MarkSvg.js"
import { font } from "./Palette.js"
import { renderPatterns } from "./Patterns.js"
import { phaseWindowLegend, phaseWindowsOf, renderWindowBands, renderWindowEdges } from "./PhaseWindowSvg.js"
import { abbreviationLegend, renderInitialStates, renderStates, stateLegend } from "./StateSvg.js"
import { element, escapeXml, svgDocument } from "./Svg.js"
import { sortEntries } from "./TimelineEntries.js"
import type { TimelineInput } from "./TimelineInput.js"
import { layoutTimeline } from "./TimelineLayout.js"
import { renderTitle } from "./TitleSvg.js"
import { p2pLegend, renderP2PColumn } from "./TopologySvg.js"
import { renderViolations, violationLegend } from "./ViolationSvg.js"
import { renderReleases, renderWaits, waitLegend } from "./WaitSvg.js"

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

/**
 * Draws a group's timeline as a standalone SVG document: a time axis in ms, one lane per
 * device with its states coloured by P2P class (initiating, quiesced, halted, ERROR), the arcs
 * in flight as hatched bars, dependency waits as dotted lines (with a thin arrow from the arc
 * each waited for), phase windows as bands across every lane (the switchover/downtime window
 * highlighted), rollbacks, resets, failures, and P2P invariant violations in red on the
 * target's lane; a legend at the bottom. No fonts, scripts or images are referenced, and every
 * piece of text is escaped. Lanes shrink as devices are added, and long idle stretches of time
 * are compressed (shown as breaks on the axis) when the arcs would otherwise be too narrow.
 *
 * Each element has its renderer, in its own module; this one lays the picture out once and
 * stacks the elements, back to front.
 */
export const renderTimelineSvg = (input: TimelineInput, options: TimelineSvgOptions = {}): string => {
  const entries = sortEntries(input.entries)
  const layout = layoutTimeline(input, entries, options)
  const windows = phaseWindowsOf(entries)
  const states = renderStates(entries, layout)
  const plot = [
    renderLanes(layout),
    renderWindowBands(windows, layout),
    renderGrid(layout),
    renderInitialStates(input.devices, entries, layout),
    states.markup,
    renderArcs(entries.arcs, layout),
    renderWindowEdges(windows, layout),
    element("g", { class: "waits" }, [
      renderWaits(entries.waits, layout, options.waitLabels ?? true, states.occupied),
      renderReleases(entries.waits, layout)
    ]),
    renderP2PColumn(layout.p2pColumn, layout.p2pX0, layout.axisTop - 6, layout.centre),
    renderDeviceMarks(entries, layout),
    renderViolations(entries, layout),
    renderBreaks(layout),
    renderHeader(layout.header, layout.headerTop, layout.lanesBottom),
    ...renderAxes(layout)
  ]
  const legend = renderLegend(
    [
      ...stateLegend(entries, input.devices),
      ...arcLegend(entries.arcs),
      ...waitLegend(entries.waits),
      ...p2pLegend(layout.p2pColumn),
      ...phaseWindowLegend(entries),
      ...deviceMarkLegend(entries),
      ...violationLegend(entries, input.invariantChecked === true),
      ...breakLegend(layout),
      ...abbreviationLegend(states.shortNames)
    ],
    layout.legendTop,
    layout.width
  )
  const { width, title } = layout
  const height = legend.height
  return svgDocument({ width, height, viewBox: `0 0 ${width} ${height}`, "font-family": font }, [
    title === undefined ? "" : element("title", {}, escapeXml(title)),
    renderPatterns(),
    element("rect", { width, height, fill: "#ffffff" }),
    ...renderTitle(input, entries, layout),
    ...plot,
    legend.markup
  ])
}
