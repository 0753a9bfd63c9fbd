import { type Flag, FlagNames, type Flags, flagsOf, type State, States } from "@lockstep/fsm"
import { Effect } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/** Parses a state name as typed on the command line (case-insensitive, `-` or `_`). */
export const parseState = (option: string, text: string): Effect.Effect<State, CliFailure> => {
  const normalized = text.trim().toUpperCase().replaceAll("-", "_")
  const found = States.find((s) => s === normalized)
  return found === undefined
    ? Effect.fail(invalidInput(`${option}: unknown state "${text}". Valid states: ${States.join(", ")}.`))
    : Effect.succeed(found)
}

/** Parses a comma-separated flag list such as `STOP_COPY,P2P`; an empty list is allowed. */
export const parseFlags = (option: string, text: string): Effect.Effect<Flags, CliFailure> => {
  const names = text
    .split(",")
    .map((s) => s.trim().toUpperCase().replaceAll("-", "_"))
    .filter((s) => s.length > 0)
  const unknown = names.filter((n) => !(FlagNames as ReadonlyArray<string>).includes(n))
  return unknown.length > 0
    ? Effect.fail(
        invalidInput(
          `${option}: unknown migration flag${unknown.length > 1 ? "s" : ""} ${unknown.map((u) => `"${u}"`).join(", ")}. Valid flags: ${FlagNames.join(", ")} (comma-separated).`
        )
      )
    : Effect.succeed(flagsOf(names as ReadonlyArray<Flag>))
}
