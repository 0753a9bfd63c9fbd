import { decodeGroup, describeIssue, deviceEntry, type GroupProblem, readJsonFile } from "@lockstep/coordinator"
import { Effect, type FileSystem, Result, Schema } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"
import { inputFileSentence } from "./InputFile.js"
import { type MigrationSettings, ScenarioDocument, ScenarioRules, scenarioParseOptions } from "./ScenarioDocument.js"

/*
 * A scenario, resolved: its document (see ScenarioDocument.ts) decoded, checked with the group
 * each side becomes, and turned into the group document of each side with the settings.
 */

/** Which group of a scenario. */
export type Role = "source" | "destination"

/** A scenario file, checked: the JSON of each side's group document, and the settings. */
export interface Scenario {
  readonly file: string
  /** The group document of each side, faults and destination overrides merged in. */
  readonly documents: Readonly<Record<Role, unknown>>
  readonly seed: number
  readonly writesPerSecond: number
  readonly migration: MigrationSettings
}
type Json = { readonly [key: string]: unknown }
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v)
const objectOr = (v: unknown): Json => (isObject(v) ? v : {})

/**
 * The document as it is checked before any device is opened: a kernel device's flags come from
 * the kernel when it is opened, so until then one that declares none is checked as having
 * STOP_COPY alone (every migratable device has it).
 */
const withKernelFlags = (doc: Json): Json =>
  Array.isArray(doc.devices)
    ? {
        ...doc,
        devices: doc.devices.map((d: unknown) =>
          isObject(d) && d.vfio !== undefined && d.flags === undefined ? { ...d, flags: ["STOP_COPY"] } : d
        )
      }
    : doc

const decodeDocument = Schema.decodeUnknownResult(ScenarioDocument)

/** A problem as one line: `path: reason`. */
const problemLine = (problem: GroupProblem): string =>
  `${problem.path === "" ? "" : `${problem.path}: `}${problem.reason}`

/** The problems of the group a scenario document describes (kernel devices' flags assumed). */
const groupProblems = (json: unknown): Effect.Effect<ReadonlyArray<string>> =>
  isObject(json)
    ? decodeGroup(withKernelFlags(json)).pipe(
        Effect.match({ onFailure: (e) => e.problems.map(problemLine), onSuccess: () => [] })
      )
    : Effect.succeed([])

const decodeRules = Schema.decodeUnknownResult(ScenarioRules)

/** The problems of the scenario's own rules on a document whose shape was refused. */
const ruleProblems = (json: unknown): ReadonlyArray<GroupProblem> => {
  const decoded = decodeRules(json, scenarioParseOptions)
  return Result.isFailure(decoded) ? describeIssue(decoded.failure.issue) : []
}

/**
 * A decoded scenario document checked with its group, and resolved: `decoded` is the schema's
 * verdict on `json`. Every problem is reported at once, each with its path: the schema's
 * (unknown or wrong keys at any depth, faults or overrides naming devices the group lacks) and
 * the group's own (which judge the well-formed parts of a refused document too).
 */
const resolveScenario = (
  json: unknown,
  decoded: Result.Result<ScenarioDocument, { readonly problems: ReadonlyArray<GroupProblem> }>,
  file: string
): Effect.Effect<Scenario, CliFailure> =>
  Effect.gen(function* () {
    const problems = [
      ...new Set([
        ...(Result.isFailure(decoded) ? [...decoded.failure.problems, ...ruleProblems(json)].map(problemLine) : []),
        ...(yield* groupProblems(json))
      ])
    ]
    if (problems.length > 0 || Result.isFailure(decoded))
      return yield* invalidInput(`${file}: not a valid scenario:\n  ${problems.join("\n  ")}`)
    return resolveSides(decoded.success, file)
  })

/**
 * Reads a scenario file. Everything wrong with it is the user's to fix: exit code 2, with the
 * file name and what is wrong (unknown keys included, so a misspelt setting never silently
 * falls back to its default).
 */
export const loadScenario = (file: string): Effect.Effect<Scenario, CliFailure, FileSystem.FileSystem> =>
  readJsonFile(file, ScenarioDocument, scenarioParseOptions).pipe(
    Effect.map((doc) => resolveScenario(doc, Result.succeed(doc), file)),
    Effect.catch((error) =>
      error.reason._tag === "JsonFileInvalid"
        ? Effect.succeed(resolveScenario(error.reason.document, Result.fail(error.reason), file))
        : Effect.fail(
            invalidInput(
              inputFileSentence(
                error,
                "scenario file",
                "; give the path of one (lockstep demo --print-scenario prints one to start from)"
              )
            )
          )
    ),
    Effect.flatten
  )

/**
 * Checks a scenario given as a parsed JSON value (an embedded one); `file` names it in every
 * message, as {@link loadScenario} does.
 */
export const decodeScenario = (json: unknown, file: string): Effect.Effect<Scenario, CliFailure> =>
  resolveScenario(
    json,
    Result.mapError(decodeDocument(json, scenarioParseOptions), ({ issue }) => ({ problems: describeIssue(issue) })),
    file
  )

/**
 * The group document of each side: the scenario's devices, with the destination's backend keys
 * and `sim` overrides merged in on its side, and each side's fault plans replacing a device's
 * `sim.faults`.
 */
const resolveSides = (doc: ScenarioDocument, file: string): Scenario => {
  const { seed, p2pWritesPerSecond, faults, destination, migration, ...group } = doc
  const side = (role: Role): unknown => {
    const plans: Readonly<Record<string, unknown>> = faults?.[role] ?? {}
    const overrides: Readonly<Record<string, unknown>> = role === "destination" ? (destination?.sim ?? {}) : {}
    const backends: Readonly<Record<string, Json>> = role === "destination" ? (destination?.devices ?? {}) : {}
    return {
      ...group,
      devices: group.devices.map((d) => {
        const plan = deviceEntry(plans, d.id)
        return {
          ...d,
          ...deviceEntry(backends, d.id),
          sim: {
            ...objectOr(d.sim),
            ...objectOr(deviceEntry(overrides, d.id)),
            ...(plan === undefined ? {} : { faults: plan })
          }
        }
      })
    }
  }
  return {
    file,
    documents: { source: side("source"), destination: side("destination") },
    seed: seed ?? 1,
    writesPerSecond: p2pWritesPerSecond ?? 1000,
    migration: migration ?? {}
  }
}
