import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { CliFailure } from "./CliFailure.js"
import { fsmCommand } from "./FsmCommand.js"

/** The `lockstep` command tree. */
export const lockstep = Command.make("lockstep").pipe(
  Command.withDescription(
    "Lockstep coordinates P2P-safe live migration of groups of VFIO devices. Run a subcommand with --help for details."
  ),
  Command.withSubcommands([fsmCommand])
)

/**
 * Runs the CLI on `args` (without the node and script paths). Failures the CLI explains
 * are printed to stderr as sentences and carry their exit code.
 */
export const main = (args: ReadonlyArray<string>) =>
  Command.runWith(lockstep, { version: "0.1.0" })(args).pipe(
    Effect.tapError((e) =>
      e instanceof CliFailure && e.quiet !== true ? Console.error(`lockstep: ${e.text}`) : Effect.void
    )
  )
