import type { Group } from "@lockstep/coordinator"
import type { MigrationEvent, Side } from "@lockstep/migration"
import type { Fabric } from "@lockstep/sim"
import {
  type Mark,
  makeTimelineRecorder,
  type Phase,
  renderTimelineSvg,
  type TimelineEntry,
  type TimelineInput,
  type TimelineRecorder
} from "@lockstep/timeline"

/**
 * Records a simulated migration for its timeline picture: both groups on one time axis, the
 * source's lanes first (`src gpu0`), then the destination's (`dst gpu0`), with the phases of the
 * migration as bands, its downtime window highlighted, and the P2P violations each group's
 * fabric saw. One recorder per group: their transitions run at the same time and their arc ids
 * overlap, so they are recorded apart and joined as plain data at the end.
 */
export interface MigrationTimeline {
  /** Takes every migration event of both sides. */
  readonly onEvent: (event: MigrationEvent) => void
  /** Adds what the fabrics saw and draws the picture as a standalone SVG. */
  readonly render: (title: string) => string
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

/** A group drawn in the picture, with the fabric that checked its P2P traffic when it is simulated. */
export interface TimelineGroup {
  readonly group: Group
  readonly fabric?: Fabric | undefined
}

/** A recorder for the migration between `source` and `destination`. */
export const makeMigrationTimeline = (source: TimelineGroup, destination: TimelineGroup): MigrationTimeline => {
  const groups: Readonly<Record<Side, TimelineGroup>> = { source, destination }
  const recorders: Readonly<Record<Side, TimelineRecorder>> = {
    source: makeTimelineRecorder({ devices: source.group.devices, markTransitions: false }),
    destination: makeTimelineRecorder({ devices: destination.group.devices, markTransitions: false })
  }
  const extra: Array<Phase | Mark> = []
  let downtimeFrom: number | undefined

  const onEvent = (event: MigrationEvent): void => {
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

  const render = (title: string): string => {
    for (const side of ["source", "destination"] as const) {
      const fabric = groups[side].fabric
      if (fabric !== undefined) recorders[side].addViolations(fabric.violations(), fabric.corruptingWrites())
    }
    // Both groups' lanes run to the same end: a little after the last thing either side saw, so
    // the states the groups end in show.
    const seen = (["source", "destination"] as const).map((side) => recorders[side].toInput())
    const starts = seen.flatMap((input) => (input.start === undefined ? [] : [input.start]))
    const start = starts.length === 0 ? 0 : Math.min(...starts)
    const last = Math.max(
      start,
      ...seen.map((input) => input.end ?? start),
      ...extra.map((e) => (e._tag === "Mark" ? e.at : e.to))
    )
    const end = last + Math.max(1, (last - start) * 0.03)
    const sides = ["source", "destination"] as const
    const inputs = sides.map((side) => [side, recorders[side].toInput({ end })] as const)
    const merged: TimelineInput = {
      devices: inputs.flatMap(([side, input]) => input.devices.map((d) => ({ ...d, id: lanePrefix[side] + d.id }))),
      entries: [
        ...inputs.flatMap(([side, input]) => input.entries.map((e) => renamed(e, (id) => lanePrefix[side] + id))),
        ...extra
      ],
      start,
      end,
      title,
      // Only a simulated group's fabric checks the P2P invariant as the devices run.
      invariantChecked: source.fabric !== undefined && destination.fabric !== undefined,
      p2p: {
        domains: sides.flatMap((side) =>
          groups[side].group.topology.domains.map((d) => d.members.map((id) => lanePrefix[side] + id))
        ),
        edges: sides.flatMap((side) =>
          groups[side].group.topology.explicitEdges.map(
            ([initiator, target]) => [lanePrefix[side] + initiator, lanePrefix[side] + target] as const
          )
        )
      }
    }
    return renderTimelineSvg(merged, { width: 1400 })
  }

  return { onEvent, render }
}
