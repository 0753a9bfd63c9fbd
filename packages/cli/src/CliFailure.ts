import { Data, Runtime } from "effect"

/**
 * The exit codes of `lockstep` (the README's CLI section lists them):
 * - 0: done (for `check`, also when the group is not migratable: the verdict is the output);
 * - 1: the operation failed (a migration that failed and rolled back, a refused transition,
 *   a server that cannot be reached);
 * - 2: invalid input or usage (a bad file, value or flag); nothing was touched;
 * - 70: an internal error, a defect in Lockstep (printed with its cause and a hint to report it);
 * - 130 / 143: stopped by SIGINT / SIGTERM, after rolling back what the command was moving.
 */
export const ExitCode = { failed: 1, invalidInput: 2, defect: 70, SIGINT: 130, SIGTERM: 143 } as const

/** One of the exit codes a failure carries. */
export type FailureExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/**
 * A failure the CLI explains to the user: it carries the sentence to print (what went wrong,
 * what to do) and the process exit code. Every command fails with this alone; `Main`'s single
 * handler prints it (or, under `--json`, a JSON error object) and exits with its code.
 */
export class CliFailure extends Data.TaggedError("CliFailure")<{
  readonly text: string
  readonly exitCode: FailureExitCode
  /** Already reported on stdout (the command printed its own result): print nothing more. */
  readonly quiet?: boolean
  /** The command printed its own JSON result under `--json`: print the sentence, but no JSON error object. */
  readonly printedJson?: boolean
}> {
  override readonly [Runtime.errorExitCode]: number = this.exitCode
  // The CLI's handler has printed it: the runtime must not log it again.
  override readonly [Runtime.errorReported]: boolean = false
  override get message(): string {
    return this.text
  }
}

/** Invalid input: a bad name, a bad file, a bad value. Exit code 2. */
export const invalidInput = (text: string): CliFailure => new CliFailure({ text, exitCode: ExitCode.invalidInput })

/** An operation that failed (the input was fine). Exit code 1. */
export const operationFailed = (text: string): CliFailure => new CliFailure({ text, exitCode: ExitCode.failed })
