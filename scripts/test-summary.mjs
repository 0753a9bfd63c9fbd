// Prints the plain closing line "N passed, N failed" from vitest's JSON report, and exits
// non-zero unless every test passed (or if the report is missing: vitest itself failed).
import { readFileSync, rmSync } from "node:fs"

const file = "node_modules/.cache/vitest-results.json"
if (process.argv.includes("--clean")) {
  // Before a run: a report left by an earlier run must never be read as this run's.
  rmSync(file, { force: true })
  process.exit(0)
}
let report
try {
  report = JSON.parse(readFileSync(file, "utf8"))
} catch (error) {
  process.stderr.write(`no vitest report at ${file}: ${error.message}\n`)
  process.exit(1)
}
const passed = report.numPassedTests ?? 0
// A file that failed without a failing test (it did not load, or held no test) counts as one failure.
const brokenFiles = (report.testResults ?? []).filter(
  (file) => file.status === "failed" && !(file.assertionResults ?? []).some((t) => t.status === "failed")
).length
const failed = (report.numFailedTests ?? 0) + brokenFiles
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0)
process.stdout.write(`\n${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}\n`)
process.exit(failed === 0 && report.success !== false && passed > 0 ? 0 : 1)
