/**
 * The long-running fuzzer: `npm run fuzz [-- options]` (Node 24 runs this file as is).
 *
 *   --minutes N         how long to fuzz, split between the fuzzers (default FUZZ_MINUTES, else 10)
 *   --fuzzer NAME       interleavings, model, campaign or sessions (repeatable; default all four)
 *   --seed S --path P   replay one failure exactly (with one --fuzzer), as a failure prints it
 *
 * It runs test/fuzz/Soak.test.ts through vitest (which resolves the workspace packages to their
 * sources, as every test does), with FUZZ_MINUTES, FUZZ_ONLY, FUZZ_SEED and FUZZ_PATH set, and
 * exits with vitest's status. Progress and the summary (runs, faults fired, interleavings tried)
 * are printed as they come.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

const usage =
  "usage: npm run fuzz -- [--minutes N] [--fuzzer interleavings|model|campaign|sessions]… [--seed S [--path P]]"

const { values } = parseArgs({
  options: {
    minutes: { type: "string" },
    fuzzer: { type: "string", multiple: true },
    seed: { type: "string" },
    path: { type: "string" },
    help: { type: "boolean", short: "h" }
  }
})

const fail = (message: string): never => {
  process.stderr.write(`${message}\n${usage}\n`)
  process.exit(2)
}

if (values.help === true) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}
// The flag wins; without it, FUZZ_MINUTES as the soak test itself reads it.
const minutesFrom = values.minutes === undefined && process.env.FUZZ_MINUTES ? "FUZZ_MINUTES" : "--minutes"
const minutesText = values.minutes ?? process.env.FUZZ_MINUTES ?? "10"
const minutes = Number(minutesText)
if (!(minutes > 0)) fail(`${minutesFrom} must be a positive number, not ${minutesText}`)
const names = values.fuzzer ?? []
for (const name of names) {
  if (!["interleavings", "model", "campaign", "sessions"].includes(name)) fail(`unknown fuzzer ${name}`)
}
if (values.seed !== undefined && names.length !== 1) fail("--seed replays one fuzzer: give exactly one --fuzzer")
if (values.seed !== undefined && !Number.isSafeInteger(Number(values.seed)))
  fail(`--seed ${values.seed} is not an integer`)
if (values.path !== undefined && values.seed === undefined) fail("--path needs --seed")

const root = fileURLToPath(new URL("../..", import.meta.url))
const env: NodeJS.ProcessEnv = {
  ...process.env,
  FUZZ_MINUTES: String(minutes),
  FUZZ_ONLY: names.join(","),
  FUZZ_SEED: values.seed ?? "",
  FUZZ_PATH: values.path ?? ""
}
const child = spawn("npx", ["vitest", "run", "test/fuzz/Soak.test.ts"], { cwd: root, env, stdio: "inherit" })
child.on("exit", (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)))
