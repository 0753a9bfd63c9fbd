// Runs one of the examples in examples/: `npm run example -- NAME`. Without a name, lists them.
// Each example folder has an example.json: a one-line summary and the steps to run, each a
// command (`lockstep …` or `node FILE`) with the exit code it is expected to end with (default 0).
// The runner prints every command before its output, and exits 1 if a step ends otherwise.
import { spawnSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const examplesDir = join(root, "examples")
const cli = join(root, "packages", "cli", "bin", "lockstep.js")
const say = (text) => process.stdout.write(`${text}\n`)
const fail = (text, code) => {
  process.stderr.write(`example: ${text}\n`)
  process.exit(code)
}

const readManifest = (name) => {
  const file = join(examplesDir, name, "example.json")
  try {
    return JSON.parse(readFileSync(file, "utf8"))
  } catch (error) {
    return fail(`${file} is not a valid example manifest: ${error.message}`, 2)
  }
}

/** Every example by name, in the order their manifests give. */
const manifests = new Map(
  readdirSync(examplesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(examplesDir, entry.name, "example.json")))
    .map((entry) => [entry.name, readManifest(entry.name)])
    .sort(([, a], [, b]) => (a.order ?? 99) - (b.order ?? 99))
)
const examples = [...manifests.keys()]

const [name, ...extra] = process.argv.slice(2)
if (name === undefined || name === "--help" || name === "-h") {
  say("Examples (run one with `npm run example -- NAME`; each folder's README.md explains it):\n")
  const width = Math.max(...examples.map((e) => e.length))
  for (const example of examples) say(`  ${example.padEnd(width)}  ${manifests.get(example).summary}`)
  process.exit(0)
}
if (extra.length > 0) fail(`one example at a time, got ${[name, ...extra].join(" ")}`, 2)
if (!examples.includes(name))
  fail(`there is no example "${name}". The examples are: ${examples.join(", ")} (\`npm run example\` lists them).`, 2)
if (!existsSync(join(root, "packages", "cli", "dist", "bin.js")))
  fail("the packages are not built yet: run `npm install` (or `npm run build`) first, then try again.", 1)

const manifest = manifests.get(name)
say(`${name}: ${manifest.summary}`)
for (const step of manifest.steps) {
  const [command, ...args] = step.run
  const expected = step.exit ?? 0
  const shown = command === "lockstep" ? ["npx", "lockstep", ...args] : [command, ...args]
  say(`\n$ ${shown.join(" ")}`)
  // `node` is the node running this script: under `npm run`, the pinned Node 24.
  const argv = command === "lockstep" ? [cli, ...args] : args
  const run = spawnSync(process.execPath, argv, { cwd: root, stdio: "inherit" })
  const code = run.status ?? 1
  if (code !== expected)
    fail(`\`${shown.join(" ")}\` exited ${code}${run.signal ? ` (${run.signal})` : ""}, expected ${expected}.`, 1)
  if (code !== 0) say(`(exit ${code}, as this example expects)`)
}
