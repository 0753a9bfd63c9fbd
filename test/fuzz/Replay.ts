import * as fc from "fast-check"

/**
 * Running a fuzz property so that any failure replays exactly: the failure message ends with
 * one command line that reruns the shrunk counterexample (fast-check's seed and path), and
 * `FUZZ_SEED` / `FUZZ_PATH` in the environment make the same property run just that.
 */

/** Counters a fuzz session reports. */
export interface FuzzStats {
  /** Property runs (generated scenarios). */
  runs: number
  /** Group transitions attempted. */
  transitions: number
  /** Injected faults that fired: failed arcs and hung arcs. */
  faults: number
  /** Transitions that were interrupted from outside. */
  interruptions: number
  /** Distinct orders in which the scheduler released the arcs' steps. */
  readonly interleavings: Set<string>
  /** Steps released by the scheduler, in all. */
  scheduledSteps: number
  /** Outcomes by kind. */
  readonly outcomes: Record<string, number>
  /** Called after every run (the long session reports progress from it: timers may not fire). */
  onRun: (() => void) | undefined
}

export const makeStats = (): FuzzStats => ({
  runs: 0,
  transitions: 0,
  faults: 0,
  interruptions: 0,
  interleavings: new Set(),
  scheduledSteps: 0,
  outcomes: {},
  onRun: undefined
})

/** Counts a finished run. */
export const runDone = (stats: FuzzStats): void => {
  stats.runs++
  stats.onRun?.()
}

/** One line summing up a session. */
export const formatStats = (name: string, stats: FuzzStats, ms: number): string => {
  const outcomes = Object.entries(stats.outcomes)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(", ")
  const interleavings =
    stats.scheduledSteps > 0
      ? `, ${stats.interleavings.size} distinct interleavings (${stats.scheduledSteps} steps)`
      : ""
  return `${name}: ${stats.runs} runs, ${stats.transitions} transitions (${outcomes}), ${stats.faults} faults fired, ${stats.interruptions} interruptions${interleavings} in ${(ms / 1000).toFixed(1)} s`
}

/** Where a property lives, for its replay command. */
export interface PropertyName {
  /** The test file, from the repository root. */
  readonly file: string
  /** The full test name (describe blocks and test), as vitest's `-t` matches it. */
  readonly test: string
  /** The fuzzer's name for `npm run fuzz -- --fuzzer …`, if the long runner can replay it. */
  readonly fuzzer?: string
}

const envNumber = (name: string): number | undefined => {
  const text = process.env[name]
  if (text === undefined || text === "") return undefined
  const n = Number(text)
  if (!Number.isSafeInteger(n)) throw new Error(`${name}=${text} is not an integer`)
  return n
}

/** The replay settings from the environment (`FUZZ_SEED`, `FUZZ_PATH`), if any. */
export const replayFromEnv = (): { readonly seed: number; readonly path?: string } | undefined => {
  const seed = envNumber("FUZZ_SEED")
  const path = process.env.FUZZ_PATH
  if (seed === undefined) return undefined
  return path === undefined || path === "" ? { seed } : { seed, path }
}

/** The command that replays a failure of `name` found with `seed` at `path`. */
export const replayCommand = (name: PropertyName, seed: number, path: string | undefined): string => {
  const env = `FUZZ_SEED=${seed}${path === undefined ? "" : ` FUZZ_PATH=${path}`}`
  const vitest = `${env} npx vitest run ${name.file} -t '${name.test.replaceAll("'", ".")}'`
  const runner =
    name.fuzzer === undefined
      ? ""
      : `\n  or: npm run fuzz -- --fuzzer ${name.fuzzer} --seed ${seed}${path === undefined ? "" : ` --path ${path}`}`
  return `Replay: ${vitest}${runner}`
}

const errorText = (error: unknown): string =>
  error instanceof Error ? `Got: ${error.message}` : error === undefined ? "" : `Got: ${String(error)}`

/** What a checked property found. */
export interface FuzzResult {
  readonly failed: boolean
  readonly seed: number
  readonly path: string | undefined
  readonly numRuns: number
  /** fast-check's report with the replay command, when it failed. */
  readonly report: string
}

/**
 * Checks `property` with `parameters`, unless the environment asks for a replay: then exactly the
 * run at `FUZZ_SEED` / `FUZZ_PATH`. Never throws: the result says whether it failed.
 */
export const checkFuzz = async <Ts>(
  name: PropertyName,
  property: fc.IAsyncPropertyWithHooks<Ts>,
  parameters: fc.Parameters<Ts>
): Promise<FuzzResult> => {
  const replay = replayFromEnv()
  const details = await fc.check(
    property,
    replay === undefined
      ? parameters
      : // A path names one case: run exactly it. A seed alone reruns the same sequence of cases.
        { ...parameters, ...replay, endOnFailure: true, ...(replay.path === undefined ? {} : { numRuns: 1 }) }
  )
  const path = details.counterexamplePath ?? undefined
  return {
    failed: details.failed,
    seed: details.seed,
    path,
    numRuns: details.numRuns,
    report: details.failed
      ? `${fc.defaultReportMessage(details)}\n${errorText(details.errorInstance)}\n${replayCommand(name, details.seed, path)}`
      : ""
  }
}

/** Writes a line to the test output (fuzz reports are meant to be read). */
export const report = (line: string): void => {
  process.stdout.write(`${line}\n`)
}
