import { execFile } from "node:child_process"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import { type CliRun, runCli } from "../packages/cli/test/runCli.js"

/*
 * Every example runs here as `npm run example -- NAME` runs it (the CLI in-process, from source;
 * `node FILE` steps as a Node process), ends as its manifest says, and reaches the outcome it
 * shows: migrated and verified with 0 P2P violations, or the typed failure or blocker it is about.
 * Each README's expected output must be what the example prints.
 */

const root = fileURLToPath(new URL("..", import.meta.url))
const examplesDir = join(root, "examples")
const exec = promisify(execFile)
/** The pinned Node (24) when installed, so `.ts` files run with type stripping. */
const node = existsSync(join(root, "node_modules/.bin/node")) ? join(root, "node_modules/.bin/node") : process.execPath

interface Step {
  readonly run: ReadonlyArray<string>
  readonly exit?: number
}
interface Manifest {
  readonly order: number
  readonly summary: string
  readonly steps: ReadonlyArray<Step>
}

const examples = readdirSync(examplesDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
const manifestOf = (name: string): Manifest =>
  JSON.parse(readFileSync(join(examplesDir, name, "example.json"), "utf8")) as Manifest

/**
 * Manifest paths are relative to the repository root; the CLI runs in this process, so they are
 * made relative to its working directory (the same text as the runner's when that is the root).
 */
const fromRoot = (arg: string): string => (arg.startsWith("examples/") ? relative(process.cwd(), join(root, arg)) : arg)

const runStep = async (step: Step): Promise<CliRun> => {
  const [command, ...args] = step.run
  if (command === "lockstep") return runCli(...args.map(fromRoot))
  if (command !== "node") throw new Error(`unknown step command ${command}`)
  return exec(node, args, { cwd: root }).then(
    ({ stdout, stderr }) => ({ stdout, stderr, exitCode: 0 }),
    (error: { stdout?: string; stderr?: string; code?: number }) => ({
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
      exitCode: error.code ?? 1
    })
  )
}

/**
 * Runs every step of an example, checking each exit code, and answers its transcript as the
 * runner prints it: the summary, then each command (`$ …`), its output, and a note on an
 * expected non-zero exit.
 */
const runExample = async (name: string): Promise<string> => {
  const manifest = manifestOf(name)
  const transcript = [`${name}: ${manifest.summary}`]
  for (const step of manifest.steps) {
    const [command, ...args] = step.run
    transcript.push("", `$ ${command === "lockstep" ? "npx " : ""}${step.run.join(" ")}`)
    const r = await runStep(step)
    transcript.push(...`${r.stdout}${r.stderr}`.replace(/\n$/, "").split("\n"))
    expect(r.exitCode, `${[command, ...args].join(" ")}\n${r.stdout}${r.stderr}`).toBe(step.exit ?? 0)
    if (r.exitCode !== 0) transcript.push(`(exit ${r.exitCode}, as this example expects)`)
  }
  return transcript.join("\n")
}

/** What `simulate --json` prints. */
interface Simulated {
  readonly ok: boolean
  readonly verified?: boolean
  readonly violations: number
  readonly rounds?: number
  readonly bytes?: number
  readonly error?: {
    readonly _tag: string
    readonly phase?: string
    readonly cause?: { readonly _tag: string }
    readonly message: string
    readonly blockers?: ReadonlyArray<{ readonly device: string }>
  }
  readonly final: { readonly source: Record<string, string>; readonly destination: Record<string, string> }
}

const simulateJson = async (name: string): Promise<Simulated> => {
  const r = await runCli("simulate", join(examplesDir, name, "scenario.json"), "--json")
  return JSON.parse(r.stdout) as Simulated
}

const checkJson = async (name: string) => {
  const r = await runCli("check", join(examplesDir, name, "scenario.json"), "--json")
  return JSON.parse(r.stdout) as { migratable: boolean; blockers: ReadonlyArray<{ device: string }> }
}

const allIn = (states: Record<string, string>, state: string) => Object.values(states).every((s) => s === state)

/** A migration that moved the group: verified byte for byte, 0 violations, the destination running. */
const expectMigrated = (run: Simulated, devices: number) => {
  expect(run).toMatchObject({ ok: true, verified: true, violations: 0 })
  expect(Object.keys(run.final.destination)).toHaveLength(devices)
  expect(allIn(run.final.destination, "RUNNING")).toBe(true)
  expect(allIn(run.final.source, "STOP_COPY")).toBe(true)
}

/** What each example is about, beyond ending as its manifest says. */
const outcomes: Record<string, (printed: string) => Promise<void>> = {
  "multi-gpu": async () => {
    const run = await simulateJson("multi-gpu")
    expectMigrated(run, 9)
    expect(run.rounds).toBeGreaterThanOrEqual(1)
    // `lockstep demo` (npm start) runs this very scenario, built in.
    const file = JSON.parse(readFileSync(join(examplesDir, "multi-gpu", "scenario.json"), "utf8"))
    expect(JSON.parse((await runCli("demo", "--print-scenario")).stdout)).toEqual(file)
    expect(JSON.parse((await runCli("demo", "--json")).stdout)).toEqual(run)
  },
  "vgpu-mix": async () => {
    expect(await checkJson("vgpu-mix")).toEqual({ migratable: true, blockers: [] })
    expectMigrated(await simulateJson("vgpu-mix"), 3)
  },
  s390: async () => {
    // The channel and crypto devices are no end of any edge: each of their arcs waits only for their own.
    const plan = await runCli("plan", join(examplesDir, "s390", "scenario.json"), "--to", "STOP_COPY", "--json")
    const arcs = (
      JSON.parse(plan.stdout) as {
        arcs: ReadonlyArray<{ id: string; device: string; to: string; after: ReadonlyArray<string> }>
      }
    ).arcs
    const deviceOf = new Map(arcs.map((a) => [a.id, a.device]))
    for (const arc of arcs.filter((a) => ["dasd0", "dasd1", "crypto0"].includes(a.device)))
      expect(arc.after.map((id) => deviceOf.get(id))).toEqual(arc.after.map(() => arc.device))
    const roce = arcs.find((a) => a.device === "roce0" && a.to === "STOP")
    expect(roce?.after.map((id) => deviceOf.get(id)).sort()).toEqual(["ism0", "roce0"])
    expectMigrated(await simulateJson("s390"), 5)
  },
  "qemu-blocked": async (printed) => {
    expect(printed).toMatch(/^migratable/m)
    expect(printed).toMatch(/QEMU's rule .*: blocks this group/)
    expectMigrated(await simulateJson("qemu-blocked"), 2)
  },
  "lockstep-blocked": async () => {
    const report = await checkJson("lockstep-blocked")
    expect(report.migratable).toBe(false)
    expect(report.blockers.map((b) => b.device)).toEqual(["nic0"])
    // Refused before any device is built or moved: the blocker report, nothing else.
    const run = await simulateJson("lockstep-blocked")
    expect(run).toMatchObject({ ok: false, error: { _tag: "NotMigratable", blockers: [{ device: "nic0" }] } })
    expect(run.error?.message).toContain("nothing was touched")
  },
  "fault-rollback": async () => {
    const run = await simulateJson("fault-rollback")
    expect(run).toMatchObject({
      ok: false,
      violations: 0,
      error: { phase: "switchover", cause: { _tag: "TransitionFailed" } }
    })
    expect(run.error?.message).toContain("gpu2: PRE_COPY_P2P → STOP_COPY")
    expect(allIn(run.final.source, "RUNNING")).toBe(true)
    // Reset (which aborts RESUMING) and parked in STOP: never running unless the migration commits.
    expect(allIn(run.final.destination, "STOP")).toBe(true)
  },
  fleet: async (printed) => {
    // Every VM moved, as the fleet's own database and the simulated hosts' fabrics say.
    const status = JSON.parse((await runCli("fleet", "status", "--json")).stdout) as {
      readonly status: string
      readonly vms: ReadonlyArray<{ readonly vm: string; readonly outcome: string; readonly source: string }>
    }
    expect(status.status).toBe("done")
    expect(status.vms).toHaveLength(20)
    expect(status.vms.every((v) => v.outcome === "migrated" && v.source === "host-a")).toBe(true)
    expect(printed).toMatch(/^P2P violations: 0 among \d+ P2P writes on the simulated hosts$/m)
    expect(printed).toMatch(/20 of 20 VMs migrated/)
  },
  "xe-full-stop": async (printed) => {
    expectMigrated(await simulateJson("xe-full-stop"), 3)
    // xe0 halts after xe1, nic0 and itself quiesce; as full stops the GPUs' quiesces cost their
    // stops (12 and 10 ms, the NIC's 3 ms): max(12, 10, 3) + 12 ms (ordinary 2 ms ones: 15 ms).
    expect(printed).toContain("arcs alone: switchover 24 ms")
  },
  "vmm-integration": async (printed) => {
    expect(printed).toContain("rejected with TransitionFailed: gpu1 failed RUNNING_P2P → STOP; rolled back: true")
    expect(printed).toMatch(/DMA bus: \d+ checks, 0 P2P violations/)
  }
}

/** The lines of the first ```text block under "Expected output" in a README; `…` lines stand for varying output. */
const expectedExcerpt = (readme: string): ReadonlyArray<string> => {
  const section = readme.split(/^## Expected output/m)[1] ?? ""
  const block = /```text\n([\s\S]*?)```/.exec(section)?.[1] ?? ""
  return block.split("\n").filter((line) => line.trim() !== "" && !line.includes("…"))
}

describe("examples", () => {
  it("each has a manifest, a README that shows how to run it, and an expected outcome here", () => {
    expect(examples.length).toBeGreaterThanOrEqual(9)
    for (const name of examples) {
      expect(existsSync(join(examplesDir, name, "example.json")), name).toBe(true)
      const readme = readFileSync(join(examplesDir, name, "README.md"), "utf8")
      expect(readme, name).toContain(`npm run example -- ${name}`)
      expect(expectedExcerpt(readme).length, `${name}: README has no expected output`).toBeGreaterThan(0)
      expect(Object.keys(outcomes), name).toContain(name)
    }
  })

  it.each(examples)("%s runs, ends as it should, and prints what its README shows", async (name) => {
    const transcript = await runExample(name)
    const outcome = outcomes[name]
    if (outcome !== undefined) await outcome(transcript)
    const readme = readFileSync(join(examplesDir, name, "README.md"), "utf8")
    const lines = new Set(transcript.split("\n"))
    for (const line of expectedExcerpt(readme))
      expect(lines, `${name}/README.md shows a line it does not print`).toContain(line)
  })

  it("the runner lists the examples, and runs one printing each command", async () => {
    const list = await exec(node, ["scripts/example.mjs"], { cwd: root })
    for (const name of examples) expect(list.stdout).toContain(`  ${name} `)
    const run = await exec(node, ["scripts/example.mjs", "lockstep-blocked"], { cwd: root })
    expect(run.stdout).toContain("$ npx lockstep check examples/lockstep-blocked/scenario.json")
    expect(run.stdout).toContain("(exit 1, as this example expects)")
    const unknown = await exec(node, ["scripts/example.mjs", "no-such-example"], { cwd: root }).catch(
      (e: { code: number; stderr: string }) => e
    )
    expect(unknown).toMatchObject({ code: 2, stderr: expect.stringContaining("there is no example") })
  })
})
