import { describeAssumedLengths, type SourceSummary } from "@lockstep/migration"
import { ExitCode } from "./CliFailure.js"
import { formatBytes, formatEstimateMs, formatMs, formatStates, plural } from "./Format.js"

/*
 * What the source of `lockstep migrate` reports once COMMIT is recorded. Two outcomes:
 * - migrated: the destination confirmed that it runs the group (exit 0);
 * - committed, destination unconfirmed: COMMIT is journalled, so the source stays stopped, but
 *   the destination never said it runs (it may have died after COMMIT): the group may run
 *   nowhere. No downtime figure (no resume was confirmed); the operator settles it from the
 *   journal. Exit code 3.
 */

/** What the source's report needs beyond the summary. */
export interface SourceReportInput {
  readonly summary: SourceSummary
  /** The journal's path, as given. */
  readonly journal: string
  /** P2P violations the fabric saw; `undefined` without a fabric (kernel devices). */
  readonly violations: number | undefined
  readonly digests: Readonly<Record<string, string>>
  readonly final: Readonly<Record<string, string>>
}

const rate = (bytesPerSecond: number | undefined): string =>
  bytesPerSecond === undefined ? "not measured" : `${formatBytes(bytesPerSecond)}/s`

/** The switchover decision as JSON: why, and the figures it was decided on. */
const switchoverJson = (s: SourceSummary) => ({
  reason: s.decision.reason,
  why: s.decision.why,
  ...(s.decision.estimateMs === undefined || !Number.isFinite(s.decision.estimateMs)
    ? {}
    : { estimateMs: s.decision.estimateMs }),
  remainingBytes: s.decision.remainingBytes,
  ...(s.decision.deliveredBytesPerSecond === undefined
    ? {}
    : { deliveredBytesPerSecond: Math.round(s.decision.deliveredBytesPerSecond) }),
  ...(s.decision.dirtyBytesPerSecond === undefined
    ? {}
    : { dirtyBytesPerSecond: Math.round(s.decision.dirtyBytesPerSecond) }),
  ...(s.decision.roundTripMs === undefined ? {} : { roundTripMs: s.decision.roundTripMs })
})

/** The commands an operator runs to settle a committed, unconfirmed migration. */
export const recoveryCommands = (journal: string): ReadonlyArray<string> => [
  `lockstep journal show ${journal}`,
  `lockstep journal resolve ${journal} --owner destination`,
  `lockstep journal resolve ${journal} --owner source`
]

/** The sentence of a committed, unconfirmed migration. */
export const unconfirmedMessage = (migration: string, journal: string): string =>
  `migration ${migration} is committed but the destination did not confirm that it runs (it may have stopped after COMMIT): the group may run nowhere. The source stays stopped and the journal ${journal} gives the group to the destination. Check the destination: if it runs the group, record it with "lockstep journal resolve ${journal} --owner destination"; if it does not, give the group back with "lockstep journal resolve ${journal} --owner source" and run it on the source again`

/** The source's report as one JSON object. */
export const sourceReportJson = (r: SourceReportInput): string => {
  const s = r.summary
  return JSON.stringify({
    ok: s.confirmed,
    outcome: s.confirmed ? "migrated" : "committed-unconfirmed",
    ...(s.confirmed ? {} : { exitCode: ExitCode.committedUnconfirmed }),
    role: "source",
    ...(s.confirmed
      ? {}
      : {
          error: {
            _tag: "CommitUnconfirmed",
            message: unconfirmedMessage(s.migration, r.journal),
            journal: r.journal,
            recovery: recoveryCommands(r.journal)
          }
        }),
    migration: s.migration,
    rounds: s.rounds,
    bytes: s.bytes,
    switchover: switchoverJson(s),
    ...(s.downtimeMs === undefined ? {} : { downtimeMs: s.downtimeMs }),
    downtimeLimitMs: s.downtimeLimitMs,
    ...(s.downtimeLimitMissedByMs === undefined ? {} : { downtimeLimitMissedByMs: s.downtimeLimitMissedByMs }),
    confirmed: s.confirmed,
    ...(s.assumedStopCopyLengths.length === 0 ? {} : { assumedStopCopyLengths: s.assumedStopCopyLengths }),
    ...(s.reinitialised.length === 0 ? {} : { reinitialised: s.reinitialised }),
    ...(s.switchoversWithdrawn === 0 ? {} : { switchoversWithdrawn: s.switchoversWithdrawn }),
    violations: r.violations,
    digests: r.digests,
    final: r.final
  })
}

/**
 * One line about pre-copy re-initialisation (REINIT) and withdrawn switchovers, or `undefined`
 * when there was none.
 */
export const reinitText = (s: SourceSummary): string | undefined => {
  const parts = [
    ...(s.reinitialised.length === 0
      ? []
      : [
          `re-initialised in pre-copy (REINIT): ${s.reinitialised
            .map((r) => `${r.device} in round ${r.round} (${formatBytes(r.initialBytes)} new initial data)`)
            .join(", ")}, sent and acknowledged again`
        ]),
    ...(s.switchoversWithdrawn === 0
      ? []
      : [`${plural(s.switchoversWithdrawn, "switchover")} withdrawn at the decision instant`])
  ]
  return parts.length === 0 ? undefined : parts.join("; ")
}

/** The downtime against its limit, as a phrase: within, missed (by how much), or no figure at all. */
export const downtimeText = (s: SourceSummary): string =>
  s.downtimeMs === undefined
    ? "no downtime figure (the destination never confirmed a resume)"
    : s.downtimeLimitMissedByMs === undefined
      ? `downtime ${formatMs(s.downtimeMs)}, within the limit of ${formatMs(s.downtimeLimitMs)}`
      : `downtime ${formatMs(s.downtimeMs)}, over the limit of ${formatMs(s.downtimeLimitMs)} by ${formatMs(s.downtimeLimitMissedByMs)}`

/** The switchover decision and the channel it was decided on, as lines. */
const switchoverLines = (s: SourceSummary): ReadonlyArray<string> => {
  const d = s.decision
  const estimate = d.estimateMs === undefined ? "" : `, estimate ${formatEstimateMs(d.estimateMs)}`
  return [
    `  switchover: ${d.reason}: ${d.why}`,
    ...(d.estimateMs === undefined
      ? []
      : [
          `  channel: ${rate(d.deliveredBytesPerSecond)} delivered, round trip ${d.roundTripMs === undefined ? "not measured" : formatMs(Number(d.roundTripMs.toFixed(2)))}; devices dirtied ${rate(d.dirtyBytesPerSecond)}${estimate}`
        ])
  ]
}

/** The source's report as text. */
export const sourceReportText = (r: SourceReportInput): string => {
  const s = r.summary
  const assumed = describeAssumedLengths(s.assumedStopCopyLengths)
  const reinit = reinitText(s)
  const what = `${plural(Object.keys(s.devices).length, "device")} in ${plural(s.rounds, "pre-copy round")}, ${formatBytes(s.bytes)}`
  const head = s.confirmed
    ? `migrated ${s.migration}: ${what}, ${downtimeText(s)}`
    : `committed ${s.migration} but the destination did not confirm that it runs: ${what}, ${downtimeText(s)}`
  return [
    head,
    ...switchoverLines(s),
    ...(assumed === undefined ? [] : [`  ${assumed}`]),
    ...(reinit === undefined ? [] : [`  ${reinit}`]),
    ...(s.confirmed
      ? []
      : [
          `  the group may run nowhere: the source stays stopped, and the journal ${r.journal} gives the group to the destination`,
          `  to settle it: check the destination; if it runs the group: lockstep journal resolve ${r.journal} --owner destination`,
          `  if it does not: lockstep journal resolve ${r.journal} --owner source, then run the group on the source again`
        ]),
    ...(r.violations === undefined ? [] : [`  P2P violations: ${r.violations}`]),
    `  source: ${formatStates(r.final)}`
  ].join("\n")
}
