import { Effect } from "effect"
import { Command } from "effect/cli"
import { checkCommand } from "./CheckCommand.js"
import { demoCommand } from "./DemoCommand.js"
import { fleetCommand } from "./FleetCommand.js"
import { fsmCommand } from "./FsmCommand.js"
import { journalCommand } from "./JournalCommand.js"
import { migrateCommand } from "./MigrateCommand.js"
import { presenterLayer, reportFailure } from "./Outcome.js"
import { planCommand } from "./PlanCommand.js"
import { simulateCommand } from "./SimulateCommand.js"
import { timelineCommand } from "./TimelineCommand.js"
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
    timelineCommand,
    journalCommand,
    fsmCommand,
    vfioUserCommand,
    fleetCommand,
    vfioCommand
  ])
)

/**
 * Runs the CLI on `args` (without the node and script paths). Every failure, whatever the
 * command, goes through one handler (`Outcome.reportFailure`): it is printed as a sentence on
 * stderr (and a JSON error object under `--json`), and the run fails with a `CliFailure`
 * carrying the exit code.
 */
export const main = (args: ReadonlyArray<string>) =>
  Command.runWith(lockstep, { version: "0.1.0" })(args).pipe(
    Effect.catchCause((cause) => reportFailure(args, cause)),
    Effect.provide(presenterLayer)
  )
