import { formatPlan, Migratability, planJson, planTransition } from "@lockstep/coordinator"
import { Console, Effect, Option, Result } from "effect"
import { Command, Flag } from "effect/cli"
import { formatBlockers, reportJson } from "./CheckCommand.js"
import { CliFailure } from "./CliFailure.js"
import { groupFileArgument, loadGroup } from "./GroupFile.js"
import { parseState } from "./Names.js"

/** `lockstep plan GROUP.json --to STATE`: the dependency graph of a group transition. */
export const planCommand = Command.make(
  "plan",
  {
    file: groupFileArgument,
    to: Flag.String("to").pipe(
      Flag.withMetavar("STATE"),
      Flag.withDescription("The state every device goes to, e.g. STOP_COPY")
    ),
    from: Flag.String("from").pipe(
      Flag.withMetavar("STATE"),
      Flag.withDescription("The state every device starts from (default: RUNNING)"),
      Flag.optional
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON line: {"arcs":[{"id","device","from","to","after"},…],"barriers":[{"id","after"},…]}, where after lists the arcs (a…) and barriers (b…) that must finish first, and a barrier finishes when everything in its own after has (expand barriers for an arc\'s full dependencies); for a blocked group, the check --json object'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const to = yield* parseState("--to", config.to)
      const from = yield* Option.match(config.from, {
        onNone: () => Effect.succeed("RUNNING" as const),
        onSome: (text) => parseState("--from", text)
      })
      const group = yield* loadGroup(config.file)

      // The design's rule comes first: a group that is not migratable gets no plan at all,
      // even for a transition its blockers could survive.
      const report = Migratability.check(group)
      if (!report.migratable) {
        yield* Console.log(config.json ? reportJson(report) : formatBlockers(group, report))
        return yield* new CliFailure({
          text: "the group is not migratable, so no transition is planned: give each device listed the P2P flag, or declare a topology in which it writes into no peer",
          exitCode: 1,
          printedJson: config.json
        })
      }

      const plan = planTransition(group, { from, to })
      if (Result.isFailure(plan)) {
        return yield* new CliFailure({ text: `cannot plan ${from} → ${to}: ${plan.failure.message}`, exitCode: 1 })
      }
      yield* Console.log(
        config.json ? JSON.stringify(planJson(plan.success)) : `${from} → ${to}: ${formatPlan(plan.success)}`
      )
    })
).pipe(
  Command.withDescription(
    "Plan a group transition: each device walks its own kernel path, and an arc waits for the arcs that keep the group safe (no device halted while a peer may still write into it). Prints the arcs by level with what each waits for. A group that is not migratable prints its blockers and exits 1."
  ),
  Command.withShortDescription("Plan a group transition as a dependency graph of arcs."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} group.json --to STOP_COPY`, description: "The switchover, level by level" },
    {
      command: `${commandPath.join(" ")} group.json --from RESUMING --to RUNNING --json`,
      description: "Resuming a destination, as one JSON line"
    }
  ])
)
