import {
  AllFlagSets,
  AllFlags,
  type Flags,
  flagNames,
  hasFlag,
  type Path,
  path,
  type State,
  StateShortNames,
  States
} from "@lockstep/fsm"
import { Console, Effect, Option, Result } from "effect"
import { Command, Flag } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { parseFlags, parseState } from "./Names.js"

const flagsOption = Flag.String("flags").pipe(
  Flag.withDescription("Migration flags, comma-separated, among STOP_COPY, P2P, PRE_COPY (default: all three)"),
  Flag.optional
)

const flagsOrAll = (option: Option.Option<string>) =>
  Option.match(option, { onNone: () => Effect.succeed(AllFlags), onSome: (text) => parseFlags("--flags", text) })

const pathCommand = Command.make(
  "path",
  {
    from: Flag.String("from").pipe(Flag.withDescription("The device's current state, e.g. RUNNING")),
    to: Flag.String("to").pipe(Flag.withDescription("The requested state, e.g. STOP_COPY")),
    flags: flagsOption
  },
  (config) =>
    Effect.gen(function* () {
      const from = yield* parseState("--from", config.from)
      const to = yield* parseState("--to", config.to)
      const flags = yield* flagsOrAll(config.flags)
      const r = path(from, to, flags)
      if (Result.isFailure(r)) {
        yield* Console.log(`refused (${r.failure.reason._tag}): ${r.failure.message}`)
        return yield* new CliFailure({ text: "the transition is refused", exitCode: 1, quiet: true })
      }
      yield* Console.log(r.success.length === 1 ? `${from} (already there: no arcs)` : r.success.join(" → "))
    })
).pipe(
  Command.withDescription(
    "Print the combination transition the kernel takes from one migration state to another: the path of single arcs a driver walks, or why it refuses."
  )
)

const short = StateShortNames

const errorCell: Record<string, string> = {
  ErrorRequested: "×error",
  FromError: "×from-error",
  UnsupportedState: "unsupported",
  BlockedTransition: "×blocked"
}

/** A readable from×to matrix: each cell lists the states after the start, or why it is refused. */
const formatTable = (flags: Flags): string => {
  const cell = (from: State, to: State) => {
    const r = path(from, to, flags)
    if (Result.isFailure(r)) return errorCell[r.failure.reason._tag] ?? r.failure.reason._tag
    return r.success.length === 1
      ? "·"
      : r.success
          .slice(1)
          .map((s) => short[s])
          .join(">")
  }
  const header = ["from \\ to", ...States]
  const rows = States.map((from) => [from, ...States.map((to) => cell(from, to))])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd()
  const legend = States.map((s) => `${short[s]}=${s}`).join(" ")
  return [
    `flags: ${flagNames(flags).join(",") || "(none)"}`,
    line(header),
    ...rows.map(line),
    "",
    `cells: the states after the start, in order; · = already there. ${legend}`,
    "×error = ERROR cannot be requested; ×from-error = only reset leaves ERROR; ×blocked = STOP_COPY cannot return to pre-copy;",
    "unsupported = a state these flags lack."
  ].join("\n")
}

/** One JSON line per (flags, from, to), in the format documented in README. */
export const tableJsonLines = (flagSets: ReadonlyArray<Flags>): Array<string> =>
  flagSets.flatMap((flags) =>
    States.flatMap((from) =>
      States.map((to) => {
        const r = path(from, to, flags)
        const head = { flags: flagNames(flags), from, to }
        return JSON.stringify(
          Result.isSuccess(r)
            ? { ...head, ok: true, path: r.success satisfies Path }
            : { ...head, ok: false, error: r.failure.reason._tag }
        )
      })
    )
  )

const tableCommand = Command.make(
  "table",
  {
    flags: flagsOption,
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        "One JSON object per line for every (from, to); without --flags, for every combination of the three flags"
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      if (config.json) {
        const sets = Option.isSome(config.flags) ? [yield* flagsOrAll(config.flags)] : AllFlagSets
        yield* Console.log(tableJsonLines(sets).join("\n"))
        return
      }
      const flags = yield* flagsOrAll(config.flags)
      // Without STOP_COPY every cell would be the same refusal: say it once.
      if (!hasFlag(flags, "STOP_COPY"))
        return yield* invalidInput(
          `--flags ${flagNames(flags).join(",") || "(none)"}: STOP_COPY is mandatory, so a device without it is not migratable and has no transition table; add STOP_COPY`
        )
      yield* Console.log(formatTable(flags))
    })
).pipe(Command.withDescription("Print the whole transition table (from × to) for a flag set."))

/** `lockstep fsm …`: the single-device state machine. */
export const fsmCommand = Command.make("fsm").pipe(
  Command.withDescription("Explore the VFIO migration v2 state machine of a single device."),
  Command.withSubcommands([pathCommand, tableCommand])
)
