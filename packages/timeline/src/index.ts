/**
 * The timeline picture of a group: one lane per device with its states over time, the arcs,
 * the waits between devices, the phases of a migration (the switchover's downtime window
 * highlighted) and any P2P invariant violation. A recorder turns a run's events into a plain
 * `TimelineInput`, and a pure function draws that as a standalone SVG. To look at one as a
 * PNG, `scripts/render-png.sh` converts it where a converter is installed (optional: nothing
 * else needs it).
 *
 * @packageDocumentation
 */

export {
  type FleetLane,
  type FleetPhaseSpan,
  type FleetTimelineInput,
  renderFleetTimelineSvg
} from "./FleetTimelineSvg.js"
export type {
  ArcSpan,
  CorruptingWrites,
  Mark,
  P2PTopology,
  Phase,
  PhaseEmphasis,
  Quarantine,
  Reset,
  Rollback,
  StateSpan,
  TimelineDevice,
  TimelineEntry,
  TimelineInput,
  TimelineState,
  Violation,
  Wait
} from "./TimelineInput.js"
export {
  fabricEntries,
  makeTimelineRecorder,
  p2pOf,
  type RecordedDevice,
  type RecordedEvent,
  type TimelineRecorder,
  type TimelineRecorderOptions,
  type ToInputOptions
} from "./TimelineRecorder.js"
export { renderTimelineSvg, type TimelineSvgOptions } from "./TimelineSvg.js"
export { RecordedPlan, RecordedTransition } from "./TransitionRecord.js"
