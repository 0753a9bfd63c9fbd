import { Data, Runtime } from "effect"
import { ExitCode, type FailureExitCode } from "./ExitCode.js"

export { ExitCode, type FailureExitCode } from "./ExitCode.js"

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
