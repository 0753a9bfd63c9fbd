import { type Group, loadGroupFile } from "@lockstep/coordinator"
import { Effect } from "effect"
import { Argument } from "effect/cli"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/** The positional `GROUP.json` argument of the commands that read a group description. */
export const groupFileArgument = Argument.String("GROUP.json").pipe(
  Argument.withDescription(
    'A group description: {"devices":[{"id":"gpu0","kind":"pci","flags":["STOP_COPY","P2P"]},…],"topology":"shared-iommu"}'
  )
)

/**
 * Reads and decodes a group file. Every way this fails (no such file, not JSON, an invalid
 * group) is the user's to fix, so it is invalid input; an invalid group lists one
 * `file: path: reason` line per problem.
 */
export const loadGroup = (file: string): Effect.Effect<Group, CliFailure> =>
  loadGroupFile(file).pipe(Effect.mapError((error) => invalidInput(error.message)))
