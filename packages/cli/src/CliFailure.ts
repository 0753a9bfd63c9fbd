import { Data, Runtime } from "effect"

/**
 * A failure the CLI has already explained to the user: it carries the sentence to print and
 * the process exit code (2 for invalid input or usage, 1 for an operation that failed, 3 for a
 * migration committed without the destination's confirmation, 4 for a journal whose last
 * migration an operator must settle first).
 */
export class CliFailure extends Data.TaggedError("CliFailure")<{
  readonly text: string
  readonly exitCode: 1 | 2 | 3 | 4
  /** Already reported on stdout: print nothing more. */
  readonly quiet?: boolean
}> {
  override readonly [Runtime.errorExitCode]: number = this.exitCode
  override readonly [Runtime.errorReported]: boolean = true
  override get message(): string {
    return this.text
  }
}

/** Invalid input: a bad name, a bad file, a bad value. Exit code 2. */
export const invalidInput = (text: string): CliFailure => new CliFailure({ text, exitCode: 2 })

/** A migration committed without the destination's confirmation: the group may run nowhere. Exit code 3. */
export const committedUnconfirmedExitCode = 3

/** The journal's newest migration must be settled by an operator before another starts. Exit code 4. */
export const journalUnsettledExitCode = 4
