import { Effect } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/**
 * The timeline is drawn as SVG, and only SVG is written: a file named for another format would
 * hold SVG under a misleading name, so it is refused before anything runs (any SVG viewer or
 * converter, e.g. `rsvg-convert -o run.png run.svg`, makes a PNG of it).
 */
export const checkTimelineFile = (file: string, what = "--timeline"): Effect.Effect<void, CliFailure> => {
  const extension = /\.([^./\\]+)$/.exec(file)?.[1]
  if (extension?.toLowerCase() === "svg") return Effect.void
  const stem = extension === undefined ? file : file.slice(0, -extension.length - 1)
  return Effect.fail(
    invalidInput(
      `${what}: ${file}: the timeline is an SVG picture, so name a file ending in .svg (e.g. ${stem}.svg), and convert it if you need another format (rsvg-convert -o ${stem}.png ${stem}.svg makes a PNG)`
    )
  )
}
