import { decodeGroup, type Group, Migratability } from "@lockstep/coordinator"
import { NotMigratable, type Side } from "@lockstep/migration"
import { Console, Effect } from "effect"
import { formatBlockers } from "./CheckCommand.js"
import { CliFailure, invalidInput } from "./CliFailure.js"
import type { Scenario } from "./Scenario.js"

/*
 * DESIGN §2: a group that is not migratable yields its blocker report before any device is
 * touched. A simulation or a migration process refuses it before it builds and parks anything:
 * parking a destination group of devices without P2P that write into each other has no safe
 * order either, and would fail first with a message about parking.
 */

/** The scenario's group, and its refusal when it is not migratable (naming each blocking device and its edges). */
export const refusalOf = (
  scenario: Scenario,
  side: Side
): Effect.Effect<{ readonly group: Group; readonly refusal: NotMigratable | undefined }, CliFailure> =>
  Effect.map(
    decodeGroup(scenario.documents.source).pipe(Effect.mapError((e) => invalidInput(`${scenario.file}: ${e.message}`))),
    (group) => {
      const report = Migratability.check(group)
      return {
        group,
        refusal: report.migratable ? undefined : new NotMigratable({ side, blockers: report.blockers })
      }
    }
  )

/** The `error` object of a refusal in `--json` output: the sentence, and the blockers as `check --json` lists them. */
export const refusalJson = (refusal: NotMigratable) => ({
  _tag: refusal._tag,
  message: `${refusal.message}; nothing was touched`,
  side: refusal.side,
  blockers: refusal.blockers.map((b) => ({ device: b.device, edges: b.edges, reason: b.reason }))
})

/** The readable refusal: what is refused, the blockers, what to do. */
export const formatRefusal = (scenario: Scenario, group: Group, refusal: NotMigratable): string =>
  [
    `migration refused before anything was touched: the ${refusal.side} group is not migratable`,
    formatBlockers(group, Migratability.check(group)),
    `to fix: give each device named the P2P flag, or declare a topology in which it writes into no peer (lockstep check ${scenario.file} shows the same report)`
  ].join("\n")

/**
 * Refuses a scenario whose group is not migratable, before any device is built or moved: prints
 * the refusal (under `--json`, one object: `{"ok":false,"error":{"_tag":"NotMigratable",
 * "message","side","blockers"},…extra}`) and fails with exit code 1. Does nothing for a
 * migratable group.
 */
export const refuseNotMigratable = (
  scenario: Scenario,
  side: Side,
  json: boolean,
  extra: Record<string, unknown> = {}
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    const { group, refusal } = yield* refusalOf(scenario, side)
    if (refusal === undefined) return
    yield* Console.log(
      json
        ? JSON.stringify({ ok: false, ...extra, error: refusalJson(refusal) })
        : formatRefusal(scenario, group, refusal)
    )
    return yield* new CliFailure({ text: refusal.message, exitCode: 1, quiet: true })
  })
