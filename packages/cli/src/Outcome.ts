import { Cause, Console, Effect, type Layer, Option, Result } from "effect"
import { CliError, CliOutput } from "effect/cli"
import { CliFailure } from "./CliFailure.js"
import { ExitCode, errorJson, type FailureExitCode, wantsJson } from "./ExitCode.js"

/*
 * How a run of `lockstep` ends, for every command alike (the rule, written once):
 * - a `CliFailure` prints its sentence on stderr, `lockstep: …`, and exits with its code;
 * - a usage error (unknown flag, missing argument) prints the parser's reason and where the
 *   help is on stderr, never the help itself on stdout, and exits 2;
 * - anything else (a typed error a command did not explain, a defect) is a bug in Lockstep:
 *   it prints its cause and a hint to report it, and exits 70;
 * - under `--json`, each of these also prints one JSON error object on stdout
 *   (`{"ok":false,"exitCode":…,"error":{"_tag","message"}}`), unless the command already
 *   printed its own JSON result, so `lockstep … --json | jq` always reads one object.
 * A command plugs in by failing with `CliFailure` (`invalidInput`, `operationFailed`); it needs
 * no code of its own to report.
 */

/**
 * A value the parser or a flag's schema refused, as `--flag: "value" is not WHAT`: the flag,
 * what was given, and what it expects (the schema's `expected` sentence).
 */
const invalidValueText = (error: CliError.InvalidValue): string => {
  // The sentence alone: a nested schema adds the path it failed at on further lines.
  const [sentence = ""] = error.expected.split("\n")
  const expected = sentence.replace(/^Schema validation failed: /, "").replace(/^Expected:? /, "")
  const name = error.kind === "flag" ? `--${error.option}` : `<${error.option}>`
  return `${name}: "${error.value}" is not ${expected}`
}

/** A parser error in one line: its "Did you mean" block folded into the sentence. */
const usageText = (error: CliError.CliError): string => {
  if (error._tag === "InvalidValue" && error.value !== "") return invalidValueText(error)
  const [head = "", ...rest] = error.message.split("\n\n  Did you mean this?\n    ")
  const suggestions = rest
    .join("\n")
    .split("\n    ")
    .filter((s) => s.length > 0)
  const first = head.charAt(0).toLowerCase() + head.slice(1)
  return suggestions.length === 0 ? first : `${first} (did you mean ${suggestions.join(" or ")}?)`
}

/** The sentence of a usage error: what the parser refused, and where the help is. */
const usageSentence = (failure: CliError.ShowHelp): string =>
  `${failure.errors.map(usageText).join("; ")}; run "${[...failure.commandPath, "--help"].join(" ")}" for usage`

/**
 * Help goes to stdout only when asked for (or when a command is named without its subcommand);
 * an invalid invocation prints nothing here, the handler reports it on stderr.
 */
export const presenterLayer: Layer.Layer<never> = CliOutput.layerPresenter({
  present: (event) => (event._tag === "InvalidInvocation" ? Effect.void : CliOutput.defaultPresenter.present(event))
})

/** A defect's cause in one line, without its stack (set `LOCKSTEP_DEBUG=1` for the stack). */
const defectText = (defect: unknown): string => {
  if (!(defect instanceof Error)) return String(defect)
  if (process.env.LOCKSTEP_DEBUG === "1" && defect.stack !== undefined) return defect.stack
  return `${defect.name}: ${defect.message}`
}

const defectSentence = (what: string): string =>
  `internal error: ${what}. This is a bug in Lockstep, not a problem with your input: please report it with the command you ran and this message (LOCKSTEP_DEBUG=1 adds the stack)`

/** What a failed run prints and the code it exits with. */
interface Reported {
  readonly text: string | undefined
  readonly exitCode: FailureExitCode
  /** The command printed its own JSON object: add none. */
  readonly printedJson?: boolean | undefined
}

const classify = (cause: Cause.Cause<unknown>): Reported => {
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error)) {
    const e = error.value
    if (e instanceof CliFailure)
      return { text: e.quiet === true ? undefined : e.text, exitCode: e.exitCode, printedJson: e.printedJson }
    if (CliError.isCliError(e) && e._tag === "ShowHelp")
      return { text: usageSentence(e), exitCode: ExitCode.invalidInput }
    if (CliError.isCliError(e)) return { text: usageText(e), exitCode: ExitCode.invalidInput }
    const described = e instanceof Error ? `${e.name === "Error" ? "" : `${e.name}: `}${e.message}` : String(e)
    return { text: defectSentence(`an unexplained failure: ${described}`), exitCode: ExitCode.defect }
  }
  const defect = Cause.findDefect(cause)
  return {
    text: defectSentence(Result.isSuccess(defect) ? defectText(defect.success) : Cause.pretty(cause)),
    exitCode: ExitCode.defect
  }
}

/**
 * The single handler of a failed run: prints what went wrong (and a JSON error object under
 * `--json`), then fails with a quiet `CliFailure` carrying the exit code. An interruption
 * passes through: it is the signal's, and the runner reports it. Help printed for a command
 * named without its subcommand ends the run successfully.
 */
export const reportFailure = (
  args: ReadonlyArray<string>,
  cause: Cause.Cause<unknown>
): Effect.Effect<void, CliFailure> => {
  if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause as Cause.Cause<never>)
  // Help shown for a command named without its subcommand is not a failure: it was printed.
  const error = Cause.findErrorOption(cause)
  if (Option.isSome(error) && CliError.isCliError(error.value) && error.value._tag === "ShowHelp") {
    if (error.value.errors.length === 0) return Effect.void
  }
  const { text, exitCode, printedJson } = classify(cause)
  return Effect.gen(function* () {
    if (text !== undefined) {
      yield* Console.error(`lockstep: ${text}`)
      if (wantsJson(args) && printedJson !== true) yield* Console.log(errorJson(exitCode, text))
    }
    return yield* new CliFailure({ text: text ?? "", exitCode, quiet: true })
  })
}
