import { type Group, Migratability } from "@lockstep/coordinator"
import { Console, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { plural } from "./Format.js"
import { groupFileArgument, loadGroup } from "./GroupFile.js"

/**
 * The JSON form of a migratability report, as `check --json` prints it:
 * `{"migratable":false,"blockers":[{"device":"nic0","edges":[["nic0","gpu0"]],"omittedEdges":0,"reason":"…"}]}`.
 * Blockers list at most `Migratability.maxBlockerEdges` edges each; `omittedEdges` counts the
 * ones left out.
 */
export const reportJson = (report: Migratability.Report): string =>
  JSON.stringify({
    migratable: report.migratable,
    blockers: report.blockers.map((b) => ({
      device: b.device,
      edges: b.edges,
      omittedEdges: b.edgeCount - b.edges.length,
      reason: b.reason
    }))
  })

const groupSize = (group: Group): string =>
  `${plural(group.devices.length, "device")}, ${plural(group.topology.edgeCount, "P2P edge")}`

/** One blocker: its edges (`nic0 → gpu0, gpu1`), then its reason on the next line. */
const formatBlocker = (blocker: Migratability.Blocker): string => {
  const targets = blocker.edges.map(([, target]) => target).join(", ")
  const more = blocker.edgeCount > blocker.edges.length ? ` and ${blocker.edgeCount - blocker.edges.length} more` : ""
  return `  ${blocker.device} → ${targets}${more}\n    ${blocker.reason}`
}

/** The devices that keep a group from migrating, each with its edges and reason, under a heading. */
export const formatBlockers = (group: Group, report: Migratability.Report): string =>
  [
    `not migratable (${groupSize(group)}): ${plural(report.blockers.length, "device")} may write into peers without P2P support`,
    ...report.blockers.map(formatBlocker)
  ].join("\n")

/** The readable verdict of `check`: migratable or the blockers, then how QEMU's rule judges the group. */
export const formatVerdict = (group: Group, report: Migratability.Report): string => {
  const verdict = report.migratable
    ? `migratable (${groupSize(group)}): every device that may write into a peer supports P2P`
    : formatBlockers(group, report)
  const qemu = Migratability.qemuWouldBlock(group) ? "blocks this group" : "allows this group"
  return `${verdict}\nQEMU's rule (several devices migrate only if all support P2P): ${qemu}`
}

/** `lockstep check GROUP.json`: the migratability verdict of a group. */
export const checkCommand = Command.make(
  "check",
  {
    file: groupFileArgument,
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON line: {"migratable":true,"blockers":[]} or {"migratable":false,"blockers":[{"device","edges","omittedEdges","reason"},…]}; a blocker lists at most 16 edges, omittedEdges counts the rest'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const group = yield* loadGroup(config.file)
      const report = Migratability.check(group)
      yield* Console.log(config.json ? reportJson(report) : formatVerdict(group, report))
    })
).pipe(
  Command.withDescription(
    "Check whether a group of devices can migrate safely: every device that may write into a peer (P2P DMA) must support P2P, so that it can stop writing before its targets halt. Lists each blocking device with its edges, and says whether QEMU's stricter rule would block the group. Exits 0 either way."
  ),
  Command.withShortDescription("Say whether a group can migrate safely, and what blocks it."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} group.json`, description: "The verdict, with each blocker" },
    { command: `${commandPath.join(" ")} group.json --json`, description: "The verdict as one JSON line" }
  ])
)
