import { describe, expect, it } from "@effect/vitest"
import { fuzzerNamed, fuzzers, realCode } from "./Fuzzers.js"
import { type FuzzStats, formatStats, makeStats, replayFromEnv, report } from "./Replay.js"

/**
 * The long fuzz session that `npm run fuzz` (test/fuzz/run.ts) starts: skipped unless
 * `FUZZ_MINUTES` is set. Splits the time between the fuzzers named in `FUZZ_ONLY` (default: all),
 * reports progress every 30 s and a summary of runs, faults fired and interleavings tried, and
 * fails with every failure's report and replay command. With `FUZZ_SEED` (and `FUZZ_PATH`) it
 * replays exactly that run of the one fuzzer in `FUZZ_ONLY`.
 */
const minutes = Number(process.env.FUZZ_MINUTES ?? "0")
const only = (process.env.FUZZ_ONLY ?? "")
  .split(",")
  .map((name) => name.trim())
  .filter((name) => name !== "")
const selected = only.length === 0 ? fuzzers : only.map(fuzzerNamed)
const replaying = replayFromEnv() !== undefined

describe.skipIf(!(minutes > 0))("fuzz: long session (FUZZ_MINUTES)", () => {
  it(
    "every fuzzer, for the time given",
    async () => {
      if (replaying && selected.length !== 1) throw new Error("a replay needs exactly one fuzzer in FUZZ_ONLY")
      const sliceMs = (minutes * 60_000) / selected.length
      const failures: Array<string> = []
      const totals: Array<{ readonly name: string; readonly stats: FuzzStats; readonly ms: number }> = []
      for (const fuzzer of selected) {
        const stats = makeStats()
        const started = Date.now()
        let reported = started
        stats.onRun = () => {
          const now = Date.now()
          if (now - reported < 30_000) return
          reported = now
          report(`  … ${formatStats(fuzzer.name, stats, now - started)}`)
        }
        const result = await fuzzer.check(stats, realCode, {
          numRuns: Number.MAX_SAFE_INTEGER,
          interruptAfterTimeLimit: sliceMs,
          markInterruptAsFailure: false
        })
        const ms = Date.now() - started
        totals.push({ name: fuzzer.name, stats, ms })
        report(`${formatStats(fuzzer.name, stats, ms)} (seed ${result.seed})`)
        if (result.failed) {
          report(result.report)
          failures.push(result.report)
        }
      }
      const sum = (f: (s: FuzzStats) => number) => totals.reduce((n, t) => n + f(t.stats), 0)
      report(
        `fuzz session: ${sum((s) => s.runs)} runs, ${sum((s) => s.transitions)} transitions, ` +
          `${sum((s) => s.faults)} faults fired, ${sum((s) => s.interruptions)} interruptions, ` +
          `${sum((s) => s.interleavings.size)} distinct interleavings tried, ${failures.length} failure(s)`
      )
      if (failures.length > 0) expect.fail(failures.join("\n\n"))
    },
    minutes * 60_000 + 300_000
  )
})
