import { Effect, FileSystem, Schema, SchemaIssue } from "effect"
import { describeIssue, type GroupProblem } from "./GroupProblem.js"

/*
 * Every JSON document Lockstep reads from a file (a group, a scenario, a fleet, a device) comes
 * through `readJsonFile`: the file is read with the `FileSystem` service, and its text decoded
 * with `Schema.fromJsonString` and the document's schema. What can go wrong is one of three
 * things, each naming the file: it cannot be read, it is not JSON (with the parser's position),
 * or it is JSON the schema refuses (with the issue, for its paths).
 */

/** The file could not be read (missing, a directory, no permission). */
export class JsonFileUnreadable extends Schema.TaggedClass<JsonFileUnreadable>()("JsonFileUnreadable", {
  path: Schema.String,
  /** The system error code, e.g. `ENOENT`, when there is one. */
  code: Schema.UndefinedOr(Schema.String),
  /** The system's own words. */
  detail: Schema.String
}) {
  get message(): string {
    return `${this.path}: cannot read the file: ${this.detail}`
  }
}

/** The file was read but is not JSON. */
export class JsonFileNotJson extends Schema.TaggedClass<JsonFileNotJson>()("JsonFileNotJson", {
  path: Schema.String,
  /** The JSON parser's own words, with the position it stopped at. */
  detail: Schema.String
}) {
  get message(): string {
    return `${this.path}: not valid JSON: ${this.detail}`
  }
}

/** The file is JSON that the document's schema refuses. */
export class JsonFileInvalid extends Schema.TaggedClass<JsonFileInvalid>()("JsonFileInvalid", {
  path: Schema.String,
  /** The schema's issue: every problem with its path in the document. */
  issue: Schema.declare((u): u is SchemaIssue.Issue => SchemaIssue.isIssue(u)),
  /**
   * The parsed JSON the schema refused: for a caller whose rules also judge the parts of a
   * refused document that are well formed, so that every problem is reported at once.
   */
  document: Schema.Unknown
}) {
  /** Every problem, with its JSON path, in document order. */
  get problems(): ReadonlyArray<GroupProblem> {
    return describeIssue(this.issue)
  }

  get message(): string {
    return this.problems.map((p) => `${this.path}: ${p.path === "" ? "" : `${p.path}: `}${p.reason}`).join("\n")
  }
}

/** Every reason reading a JSON file can fail for. */
export const JsonFileErrorReason = Schema.Union([JsonFileUnreadable, JsonFileNotJson, JsonFileInvalid])

/** The type `JsonFileErrorReason` decodes to. */
export type JsonFileErrorReason = typeof JsonFileErrorReason.Type

/** Reading a JSON file failed; match on `reason._tag`. */
export class JsonFileError extends Schema.TaggedError<JsonFileError>()("JsonFileError", {
  reason: JsonFileErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }
}

const systemCode = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

/**
 * The parser's words for text that is not JSON. `Schema.fromJsonString` reports only "a valid
 * JSON string", without where the text went wrong; the user needs the position, which only the
 * parser's own error carries.
 */
const parserDetail = (text: string): string => {
  try {
    JSON.parse(text)
    return "not JSON"
  } catch (cause) {
    return cause instanceof Error ? cause.message : String(cause)
  }
}

/** The JSON text itself was refused (not a problem at a path of the document). */
const isNotJson = (issue: SchemaIssue.Issue): boolean =>
  issue._tag === "Encoding" && issue.issue._tag === "InvalidValue"

/**
 * Reads the text of the file at `path` with `FileSystem` (UTF-8); a file that cannot be read
 * fails with `JsonFileUnreadable`, carrying the system's code and words. JSON Lines files and
 * the PEM files beside a JSON configuration are read through it too.
 */
export const readTextFile = (path: string): Effect.Effect<string, JsonFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.readFileString(path).pipe(
      Effect.mapError((error) => {
        const cause = "cause" in error.reason ? error.reason.cause : undefined
        return new JsonFileError({
          reason: new JsonFileUnreadable({
            path,
            code: systemCode(cause),
            detail: cause instanceof Error ? cause.message : error.message
          })
        })
      })
    )
  })

/** How a document is decoded beyond its schema. */
export interface JsonFileOptions {
  /**
   * `"error"` refuses a key the schema does not name, at its path, so that a misspelt setting
   * never silently falls back to its default; `"ignore"` (the default) drops it.
   */
  readonly onExcessProperty?: "ignore" | "error" | undefined
}

/**
 * Reads the JSON file at `path` and decodes it with `schema` (all errors, with the input
 * reported). `Schema.Unknown` takes the parsed value as it is, for a caller that completes the
 * document before decoding it (a device whose flags its server or the kernel gives).
 */
export const readJsonFile = <S extends Schema.Constraint>(
  path: string,
  schema: S,
  options: JsonFileOptions = {}
): Effect.Effect<S["Type"], JsonFileError, FileSystem.FileSystem | S["DecodingServices"]> =>
  Effect.gen(function* () {
    const text = yield* readTextFile(path)
    return yield* Schema.decodeUnknownEffect(Schema.fromJsonString(schema))(text, {
      errors: "all",
      reportInput: true,
      onExcessProperty: options.onExcessProperty ?? "ignore"
    }).pipe(
      Effect.mapError(
        (error) =>
          new JsonFileError({
            reason: isNotJson(error.issue)
              ? new JsonFileNotJson({ path, detail: parserDetail(text) })
              : new JsonFileInvalid({ path, issue: error.issue, document: JSON.parse(text) })
          })
      )
    )
  })
