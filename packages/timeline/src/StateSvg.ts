import { type LegendItem, legendIf, solidSwatch } from "./LegendSvg.js"
import { palette, toneOf, unknownOutline } from "./Palette.js"
import { shortStateNames, stateLabel } from "./StateNames.js"
import { element, text, textWidth, tooltip } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"
import type { StateSpan, TimelineDevice, TimelineState, Wait } from "./TimelineInput.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { formatDuration } from "./TimeScale.js"
import type { Occupied } from "./WaitSvg.js"

/**
 * The states on each lane, coloured by their P2P class: before the run, every device in its
 * initial state; then a bar per state the device was in, its name written inside where it fits
 * (shortened if need be, the legend spelling the short names out).
 */

/** A state not yet read back (UNKNOWN) is outlined dashed. */
const unknownStroke = (state: TimelineState) =>
  state === "UNKNOWN" ? { stroke: unknownOutline, "stroke-dasharray": "3 2" } : { stroke: undefined }

/** Each device in its initial state, from the plot's left edge to its first state or arc. */
export const renderInitialStates = (
  devices: ReadonlyArray<TimelineDevice>,
  entries: Entries,
  layout: TimelineLayout
): string =>
  element(
    "g",
    { class: "initial-states" },
    devices.map((device) => {
      const spans = [...entries.states, ...entries.arcs].filter((e) => e.device === device.id)
      const first = spans.reduce((t, e) => Math.min(t, e.from), layout.end)
      return element("rect", {
        class: "initial",
        "data-device": device.id,
        x: layout.plotX0,
        y: layout.laneTop(device.id) + layout.barPad,
        width: layout.x(first) - layout.plotX0,
        height: layout.barHeight,
        fill: palette[toneOf(device.initial)].fill,
        "fill-opacity": 0.75,
        ...unknownStroke(device.initial)
      })
    })
  )

/** The state bars, and what they leave to others: the short names used, where names are written. */
export interface StateBars {
  readonly markup: string
  /** States whose bars carry their short name: the legend spells them out. */
  readonly shortNames: ReadonlySet<TimelineState>
  /** Where state names are written, so that a wait's label goes beside them. */
  readonly occupied: ReadonlyArray<Occupied>
}

/** One state's bar: its markup, whether its name was shortened, where the name is written. */
interface StateBar {
  readonly markup: string
  readonly short: boolean
  readonly written: Occupied | undefined
}

const renderStateBar = (s: StateSpan, waits: ReadonlyArray<Wait>, layout: TimelineLayout): StateBar => {
  const { x0, w } = layout.span(s.from, s.to, 0.5)
  const tone = palette[toneOf(s.state)]
  const { barHeight } = layout
  const top = layout.laneTop(s.device) + layout.barPad
  const slot = layout.labelSlot(s.from, s.to)
  const label = barHeight >= 9 ? stateLabel(s.state, slot.w - 2, layout.laneFont) : undefined
  // A state the device waits in keeps its name at the left, leaving the rest to the wait's label.
  const waitedIn = waits.some((wait) => wait.device === s.device && wait.from < s.to && wait.to > s.from)
  const labelWidth = label === undefined ? 0 : textWidth(label.text, label.fontSize)
  const labelX = waitedIn ? slot.x0 + 2 : slot.x0 + slot.w / 2
  const written =
    label === undefined
      ? undefined
      : {
          device: s.device,
          x0: waitedIn ? labelX : labelX - labelWidth / 2,
          x1: waitedIn ? labelX + labelWidth : labelX + labelWidth / 2
        }
  const markup = element("g", { class: "state", "data-device": s.device, "data-state": s.state }, [
    tooltip(`${s.device}: ${s.state}, ${formatDuration(s.to - s.from)}`),
    element("rect", { x: x0, y: top, width: w, height: barHeight, fill: tone.fill, ...unknownStroke(s.state) }),
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
  return { markup, short: label?.short === true, written }
}

export const renderStates = (entries: Entries, layout: TimelineLayout): StateBars => {
  const bars = entries.states.map((s) => ({ state: s.state, ...renderStateBar(s, entries.waits, layout) }))
  return {
    markup: element(
      "g",
      { class: "states" },
      bars.map((bar) => bar.markup)
    ),
    shortNames: new Set(bars.flatMap((bar) => (bar.short ? [bar.state] : []))),
    occupied: bars.flatMap((bar) => (bar.written === undefined ? [] : [bar.written]))
  }
}

/** The P2P classes, and UNKNOWN when a state was not read back. */
export const stateLegend = (entries: Entries, devices: ReadonlyArray<TimelineDevice>): ReadonlyArray<LegendItem> => [
  { key: "initiating", swatch: solidSwatch(palette.initiating.fill), label: "initiating (RUNNING, PRE_COPY)" },
  { key: "quiesced", swatch: solidSwatch(palette.quiesced.fill), label: "quiesced (RUNNING_P2P, PRE_COPY_P2P)" },
  { key: "halted", swatch: solidSwatch(palette.halted.fill), label: "halted (STOP, STOP_COPY, RESUMING)" },
  { key: "error", swatch: solidSwatch(palette.error.fill), label: "ERROR (may still DMA)" },
  ...legendIf(entries.states.some((s) => s.state === "UNKNOWN") || devices.some((d) => d.initial === "UNKNOWN"), {
    key: "unknown",
    swatch: solidSwatch("#ffffff", unknownOutline),
    label: "unknown until read back"
  })
]

/** The short state names written on bars, spelt out. */
export const abbreviationLegend = (shortNames: ReadonlySet<TimelineState>): ReadonlyArray<LegendItem> =>
  legendIf(shortNames.size > 0, {
    key: "abbreviations",
    swatch: () => "",
    label: [...shortNames].map((state) => `${shortStateNames[state]} = ${state}`).join(", ")
  })
