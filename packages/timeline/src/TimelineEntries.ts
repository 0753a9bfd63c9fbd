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
  Violation,
  Wait
} from "./TimelineInput.js"

/** Every time an entry mentions. */
export const timesOf = (e: TimelineEntry): ReadonlyArray<number> => {
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
export const devicesOf = (e: TimelineEntry): ReadonlyArray<string> => {
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

/** A timeline's entries by kind, each kind drawn by its own renderer. */
export interface Entries {
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

/** Sorts entries by kind, keeping only those whose times are all finite numbers. */
export const sortEntries = (entries: ReadonlyArray<TimelineEntry>): Entries => {
  const kept = entries.filter((e) => timesOf(e).every(Number.isFinite))
  const tagged = <Tag extends TimelineEntry["_tag"]>(tag: Tag) =>
    kept.filter((e): e is Extract<TimelineEntry, { readonly _tag: Tag }> => e._tag === tag)
  return {
    states: tagged("StateSpan"),
    arcs: tagged("ArcSpan"),
    waits: tagged("Wait"),
    resets: tagged("Reset"),
    quarantines: tagged("Quarantine"),
    rollbacks: tagged("Rollback"),
    phases: tagged("Phase"),
    violations: tagged("Violation"),
    corruptions: tagged("CorruptingWrites"),
    marks: tagged("Mark")
  }
}
