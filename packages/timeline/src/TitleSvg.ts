import { failedArcs } from "./ArcSvg.js"
import { ink, margin, muted } from "./Palette.js"
import { element, text } from "./Svg.js"
import type { Entries } from "./TimelineEntries.js"
import type { TimelineInput } from "./TimelineInput.js"
import type { TimelineLayout } from "./TimelineLayout.js"
import { formatDuration } from "./TimeScale.js"

const plural = (count: number, noun: string) => `${count} ${noun}${count === 1 ? "" : "s"}`

/** The one-line summary under the title: devices, arcs (and failures), waits, violations when checked, the time. */
const summaryOf = (input: TimelineInput, entries: Entries, layout: TimelineLayout): string => {
  const failed = failedArcs(entries.arcs)
  const violations = entries.violations.length
  return [
    plural(layout.lanes.length, "device"),
    `${plural(entries.arcs.length, "arc")}${failed > 0 ? ` (${failed} failed)` : ""}`,
    plural(entries.waits.length, "dependency wait"),
    ...(violations > 0 || input.invariantChecked === true ? [plural(violations, "P2P violation")] : []),
    formatDuration(layout.end - layout.start)
  ].join(" · ")
}

/** The title, if any, and the summary line. */
export const renderTitle = (input: TimelineInput, entries: Entries, layout: TimelineLayout): ReadonlyArray<string> => [
  layout.title === undefined
    ? ""
    : element(
        "text",
        { class: "title", x: margin, y: layout.titleY, "font-size": 15, "font-weight": "bold", fill: ink },
        text(layout.title)
      ),
  element(
    "text",
    { class: "summary", x: margin, y: layout.summaryY, "font-size": 11, fill: muted },
    text(summaryOf(input, entries, layout))
  )
]
