import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { checkCommand } from "./CheckCommand.js"
import { CliFailure } from "./CliFailure.js"
import { demoCommand } from "./DemoCommand.js"
import { fleetCommand } from "./FleetCommand.js"
import { fsmCommand } from "./FsmCommand.js"
import { migrateCommand } from "./MigrateCommand.js"
import { planCommand } from "./PlanCommand.js"
import { simulateCommand } from "./SimulateCommand.js"
import { vfioCommand } from "./VfioCommand.js"
import { vfioUserCommand } from "./VfioUserCommand.js"

/** The `lockstep` command tree. */
export const lockstep = Command.make("lockstep").pipe(
  Command.withDescription(
    "Lockstep coordinates P2P-safe live migration of groups of VFIO devices. Run a subcommand with --help for details."
  ),
  Command.withSubcommands([
    demoCommand,
    simulateCommand,
    checkCommand,
    planCommand,
    migrateCommand,
    fsmCommand,
    vfioUserCommand,
    fleetCommand,
    vfioCommand
  ])
)

/**
 * Runs the CLI on `args` (without the node and script paths). Failures the CLI explains
 * are printed to stderr as sentences and carry their exit code.
 */
export const main = (args: ReadonlyArray<string>) =>
  Command.runWith(lockstep, { version: "0.1.0" })(args).pipe(
    Effect.tapError((e) =>
      e instanceof CliFailure && e.quiet !== true ? Console.error(`lockstep: ${e.text}`) : Effect.void
    ),
    // effect/cli has already printed the help and the parse errors; a usage error exits 2.
    Effect.catchTag("ShowHelp", (e) =>
      e.errors.length === 0 ? Effect.void : Effect.fail(new CliFailure({ text: "usage", exitCode: 2, quiet: true }))
    )
  )
