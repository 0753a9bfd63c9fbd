/*
 * The exit codes of `lockstep` and the JSON error object, in a module that loads nothing else:
 * the binary uses them before the CLI itself has loaded (a signal during start-up).
 */

/**
 * The exit codes of `lockstep` (the README's CLI section lists them):
 * - 0: done (for `check`, also when the group is not migratable: the verdict is the output);
 * - 1: the operation failed (a migration that failed and rolled back, a refused transition,
 *   a server that cannot be reached);
 * - 2: invalid input or usage (a bad file, value or flag); nothing was touched;
 * - 3: a migration committed that the destination never confirmed it runs (`migrate`): the
 *   group may run nowhere, and an operator settles it from the journal (`lockstep journal`);
 * - 4: the journal's newest migration must be settled first (`migrate`, either side): undecided,
 *   committed or completed; nothing was touched;
 * - 70: an internal error, a defect in Lockstep (printed with its cause and a hint to report it);
 * - 130 / 143: stopped by SIGINT / SIGTERM, after rolling back what the command was moving.
 */
export const ExitCode = {
  failed: 1,
  invalidInput: 2,
  committedUnconfirmed: 3,
  journalUnsettled: 4,
  defect: 70,
  SIGINT: 130,
  SIGTERM: 143
} as const

/** One of the exit codes a failure carries. */
export type FailureExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** The `_tag` of the JSON error object, by exit code. */
const jsonTag: Readonly<Record<FailureExitCode, string>> = {
  [ExitCode.failed]: "OperationFailed",
  [ExitCode.invalidInput]: "InvalidInput",
  [ExitCode.committedUnconfirmed]: "CommitUnconfirmed",
  [ExitCode.journalUnsettled]: "JournalUnsettled",
  [ExitCode.defect]: "InternalError",
  [ExitCode.SIGINT]: "Interrupted",
  [ExitCode.SIGTERM]: "Interrupted"
}

/** Whether the user asked for JSON output: `--json` before any `--` that ends the flags. */
export const wantsJson = (args: ReadonlyArray<string>): boolean => {
  const end = args.indexOf("--")
  return (end === -1 ? args : args.slice(0, end)).includes("--json")
}

/** The JSON error object printed on stdout under `--json`: `{"ok":false,"exitCode":…,"error":{"_tag","message"}}`. */
export const errorJson = (exitCode: FailureExitCode, message: string): string =>
  JSON.stringify({ ok: false, exitCode, error: { _tag: jsonTag[exitCode], message } })
