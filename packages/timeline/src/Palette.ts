import { stateClass } from "@lockstep/fsm"
import type { TimelineState } from "./TimelineInput.js"

/**
 * The colours of the timeline pictures (and the font and margin every element shares). A state is coloured by its P2P class, the one fact the
 * picture is about: initiating devices may write into their peers, quiesced ones no longer
 * start writes but still take them, halted ones must take none.
 */

/** How a state is coloured: its P2P class, with ERROR and unknown set apart. */
export type Tone = "initiating" | "quiesced" | "halted" | "error" | "unknown"

export const toneOf = (state: TimelineState): Tone =>
  state === "ERROR" ? "error" : state === "UNKNOWN" ? "unknown" : stateClass(state)

/** Each tone's bar colour, the tint its arcs are hatched on, and the colour of text on its bars. */
export const palette: Readonly<Record<Tone, { readonly fill: string; readonly tint: string; readonly ink: string }>> = {
  initiating: { fill: "#3f7cc0", tint: "#d6e4f5", ink: "#ffffff" },
  quiesced: { fill: "#eeb43f", tint: "#fbedc9", ink: "#3a2b00" },
  halted: { fill: "#6b7a8a", tint: "#dfe4ea", ink: "#ffffff" },
  error: { fill: "#8e3fb5", tint: "#ead8f3", ink: "#ffffff" },
  unknown: { fill: "#ffffff", tint: "#f1f1f1", ink: "#555555" }
}
export const tones: ReadonlyArray<Tone> = ["initiating", "quiesced", "halted", "error", "unknown"]

/** The outline of a state not yet read back (UNKNOWN). */
export const unknownOutline = "#999999"
/** P2P violations, corrupting writes, failed arcs. */
export const red = "#d62728"
export const downtimeInk = "#e8590c"
export const phaseGray = "#7d8ca3"
export const rollbackInk = "#6a3d9a"
export const ink = "#222222"
export const muted = "#666666"
export const font = "sans-serif"
/** Space around the picture, px. */
export const margin = 14

/** The fleet picture's phases (the migration package's phase names, plus the fleet's own), in legend order. */
export const fleetPhaseColor: Readonly<Record<string, string>> = {
  reserve: "#b8c2cc",
  handshake: "#9ecae1",
  prepare: "#6baed6",
  precopy: "#3f7cc0",
  switchover: "#f08c2e",
  drain: "#e8590c",
  validate: "#d9480f",
  commit: "#c92a2a",
  resume: "#a61e4d",
  recover: "#6a3d9a"
}
/** A phase the fleet picture has no colour for. */
export const fleetUnknownPhase = "#999999"
export const fleetOutcomeColor = {
  migrated: "#2b8a3e",
  "rolled-back": "#c92a2a",
  running: "#666666",
  pending: "#999999"
} as const
/** The outline of a VM's downtime window. */
export const fleetDowntimeInk = "#c92a2a"
