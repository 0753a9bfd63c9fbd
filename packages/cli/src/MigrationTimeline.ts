import type { Group } from "@lockstep/coordinator"
import type { Side } from "@lockstep/migration"
import type { Fabric } from "@lockstep/sim"
import {
  fabricEntries,
  type Mark,
  makeTimelineRecorder,
  type Phase,
  renderTimelineSvg,
  type TimelineEntry,
  type TimelineInput,
  type TimelineRecorder
} from "@lockstep/timeline"
import type { Observed, ObservedEntry, RecordedEvent, RecordedGroup } from "./EventsFile.js"

/**
 * Records a simulated migration for its timeline picture: both groups on one time axis, the
 * source's lanes first (`src gpu0`), then the destination's (`dst gpu0`), with the phases of the
 * migration as bands, its downtime window highlighted, and the P2P violations each group's
 * fabric saw. One recorder per group: their transitions run at the same time and their arc ids
 * overlap, so they are recorded apart and joined as plain data at the end. It reads plain data
 * only, so a run read back from its events file draws the same picture, byte for byte.
 */
export interface MigrationTimeline {
  /** Takes every migration event of both sides (any `MigrationEvent`). */
  readonly onEvent: (event: RecordedEvent) => void
  /** Adds what the fabrics saw and draws the picture as a standalone SVG. */
  readonly render: (title: string, observed: Observed) => string
}

const lanePrefix: Readonly<Record<Side, string>> = { source: "src ", destination: "dst " }

/** The phases drawn as bands, and from which side: the destination's own work is validating and resuming. */
const drawn: ReadonlyArray<readonly [Side, string]> = [
  ["source", "prepare"],
  ["source", "switchover"],
  ["source", "drain"],
  ["destination", "validate"],
  ["source", "commit"],
  ["destination", "resume"]
]

/** The entry with every device it names renamed. */
const renamed = (entry: TimelineEntry, name: (id: string) => string): TimelineEntry => {
  switch (entry._tag) {
    case "StateSpan":
    case "ArcSpan":
    case "Reset":
    case "Quarantine":
      return { ...entry, device: name(entry.device) }
    case "Wait":
      return {
        ...entry,
        device: name(entry.device),
        waitedFor:
          entry.waitedFor === undefined ? undefined : { ...entry.waitedFor, device: name(entry.waitedFor.device) }
      }
    case "Violation":
    case "CorruptingWrites":
      return { ...entry, initiator: name(entry.initiator), target: name(entry.target) }
    case "Mark":
      return entry.device === undefined ? entry : { ...entry, device: name(entry.device) }
    case "Phase":
    case "Rollback":
      return entry
  }
}

/** A group as its lanes are drawn: its devices in order, and who may write into whom. */
export const recordedGroupOf = (group: Group): RecordedGroup => ({
  devices: group.devices.map((d) => ({ id: d.id, kind: d.kind })),
  p2p: { domains: group.topology.domains.map((d) => d.members), edges: group.topology.explicitEdges }
})

/** What a simulated group's fabric saw of the P2P invariant, as the picture draws it. */
export const observedOf = (fabric: Fabric): ReadonlyArray<ObservedEntry> =>
  fabricEntries(fabric.violations(), fabric.corruptingWrites())

/** A recorder for the migration between `source` and `destination`. */
export const makeMigrationTimeline = (source: RecordedGroup, destination: RecordedGroup): MigrationTimeline => {
  const groups: Readonly<Record<Side, RecordedGroup>> = { source, destination }
  const recorders: Readonly<Record<Side, TimelineRecorder>> = {
    source: makeTimelineRecorder({ devices: source.devices, markTransitions: false }),
    destination: makeTimelineRecorder({ devices: destination.devices, markTransitions: false })
  }
  const extra: Array<Phase | Mark> = []
  let downtimeFrom: number | undefined

  const onEvent = (event: RecordedEvent): void => {
    switch (event._tag) {
      case "GroupTransition":
        recorders[event.side].onEvent(event.event)
        return
      case "PhaseStarted":
        if (event.side === "source" && event.phase === "switchover") downtimeFrom = event.at
        return
      case "PhaseEnded":
        if (event.durationMs > 0 && drawn.some(([side, phase]) => side === event.side && phase === event.phase))
          extra.push({
            _tag: "Phase",
            label: event.phase,
            from: event.at - event.durationMs,
            to: event.at,
            emphasis: "normal"
          })
        return
      case "RoundDone":
        extra.push({
          _tag: "Phase",
          label: `round ${event.round}`,
          from: event.at - event.durationMs,
          to: event.at,
          emphasis: "normal"
        })
        return
      case "SwitchoverDecided":
        extra.push({ _tag: "Mark", at: event.at, label: `switchover (${event.reason})` })
        return
      case "Resumed":
        if (downtimeFrom !== undefined)
          extra.push({
            _tag: "Phase",
            label: `downtime ${Number((event.at - downtimeFrom).toFixed(1))} ms`,
            from: downtimeFrom,
            to: event.at,
            emphasis: "downtime"
          })
        return
      default:
        return
    }
  }

  const render = (title: string, observed: Observed): string => {
    const sides = ["source", "destination"] as const
    const fabricSaw = sides.flatMap((side) =>
      (observed[side] ?? []).map((e) => renamed(e, (id) => lanePrefix[side] + id))
    )
    // Both groups' lanes run to the same end: a little after the last thing either side saw, so
    // the states the groups end in show.
    const seen = sides.map((side) => recorders[side].toInput())
    const starts = [
      ...seen.flatMap((input) => (input.start === undefined ? [] : [input.start])),
      ...fabricSaw.flatMap((e) => (e._tag === "Violation" || e._tag === "CorruptingWrites" ? [e.from] : []))
    ]
    const start = starts.length === 0 ? 0 : Math.min(...starts)
    const last = Math.max(
      start,
      ...seen.map((input) => input.end ?? start),
      ...extra.map((e) => (e._tag === "Mark" ? e.at : e.to)),
      ...fabricSaw.flatMap((e) => (e._tag === "Violation" || e._tag === "CorruptingWrites" ? [e.to ?? e.from] : []))
    )
    const end = last + Math.max(1, (last - start) * 0.03)
    const inputs = sides.map((side) => [side, recorders[side].toInput({ end })] as const)
    const merged: TimelineInput = {
      devices: inputs.flatMap(([side, input]) => input.devices.map((d) => ({ ...d, id: lanePrefix[side] + d.id }))),
      entries: [
        ...inputs.flatMap(([side, input]) => input.entries.map((e) => renamed(e, (id) => lanePrefix[side] + id))),
        ...fabricSaw,
        ...extra
      ],
      start,
      end,
      title,
      // Only a simulated group's fabric checks the P2P invariant as the devices run.
      invariantChecked: observed.source !== undefined && observed.destination !== undefined,
      p2p: {
        domains: sides.flatMap((side) =>
          groups[side].p2p.domains.map((members) => members.map((id) => lanePrefix[side] + id))
        ),
        edges: sides.flatMap((side) =>
          groups[side].p2p.edges.map(
            ([initiator, target]) => [lanePrefix[side] + initiator, lanePrefix[side] + target] as const
          )
        )
      }
    }
    return renderTimelineSvg(merged, { width: 1400 })
  }

  return { onEvent, render }
}
