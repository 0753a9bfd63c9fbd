import { StateShortNames } from "@lockstep/fsm"
import { textWidth } from "./Svg.js"
import type { TimelineState } from "./TimelineInput.js"

/** The short names of the states (as `lockstep fsm table` prints them), for bars too narrow for the full one. */
export const shortStateNames: Readonly<Record<TimelineState, string>> = { ...StateShortNames, UNKNOWN: "?" }

/** The smallest font a state's name is written in. */
const smallestFont = 7

/** A state's name as written in its bar. */
export interface StateLabel {
  readonly text: string
  readonly fontSize: number
  /** The short name was used (the legend then explains it). */
  readonly short: boolean
}

/**
 * The label a state's bar of `room` px can carry: its full name, else its short name, else the
 * short name in a smaller font, else none. Quiesced states are often brief (the moment between
 * an initiator quiescing and its targets halting), so the short forms are what keeps them named.
 */
export const stateLabel = (state: TimelineState, room: number, fontSize: number): StateLabel | undefined => {
  const full = state === "UNKNOWN" ? "?" : state
  const short = shortStateNames[state]
  const small = Math.max(smallestFont, Math.round(fontSize * 0.75))
  const candidates: ReadonlyArray<StateLabel> = [
    { text: full, fontSize, short: false },
    { text: short, fontSize, short: short !== full },
    { text: short, fontSize: small, short: short !== full }
  ]
  return candidates.find((c) => textWidth(c.text, c.fontSize) + 4 <= room)
}
