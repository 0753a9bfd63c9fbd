import { type JsonFileError, type JsonFileOptions, readJsonFile } from "@lockstep/coordinator"
import { Effect, type FileSystem, type Schema } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/**
 * A JSON file the user gave (a scenario, a device file): what is wrong with it is the user's to
 * fix, so it is invalid input (exit code 2), in one sentence naming the file: missing (with
 * `missingHint` on what to give instead), unreadable, not JSON (where the parser stopped), or
 * refused by its schema.
 */
export const readInputJson = <S extends Schema.Constraint>(
  file: string,
  what: string,
  schema: S,
  options: JsonFileOptions & { readonly missingHint?: string } = {}
): Effect.Effect<S["Type"], CliFailure, FileSystem.FileSystem | S["DecodingServices"]> =>
  readJsonFile(file, schema, options).pipe(
    Effect.mapError((error) => invalidInput(inputFileSentence(error, what, options.missingHint ?? "")))
  )

/** What is wrong with the user's JSON file `what`, as one sentence naming the file (the lines of its problems). */
export const inputFileSentence = ({ reason }: JsonFileError, what: string, missingHint: string): string => {
  switch (reason._tag) {
    case "JsonFileUnreadable":
      return reason.code === "ENOENT"
        ? `${reason.path}: no such ${what}${missingHint}`
        : `${reason.path}: cannot read the ${what}: ${reason.detail}`
    case "JsonFileNotJson":
      return `${reason.path}: the ${what} is not valid JSON: ${reason.detail}`
    case "JsonFileInvalid":
      return [
        `${reason.path}: not a valid ${what}:`,
        ...reason.problems.map((p) => `  ${p.path === "" ? "" : `${p.path}: `}${p.reason}`)
      ].join("\n")
  }
}
