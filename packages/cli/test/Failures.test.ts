/*
 * Nothing fails silently: every command, with inputs that make each layer fail (the parser, the
 * input files, the operation, Lockstep itself), prints one sentence saying what went wrong and
 * exits with the documented code; under --json, stdout holds exactly one JSON object.
 */
import { Console as NodeConsole } from "node:console"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Writable } from "node:stream"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Cause, Console, Effect, Exit, Runtime } from "effect"
import { makeCertificates } from "../../stream/test/Certificates.js"
import { reportFailure } from "../src/Outcome.js"
import { fixture } from "./fixtures.js"
import { runCli } from "./runCli.js"

let dir = ""
const file = (name: string) => join(dir, name)

const scenario = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P"], sim: { stateSize: 16384 } },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P"], sim: { stateSize: 16384 } }
  ]
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-failures-"))
  const certs = await Effect.runPromise(Effect.scoped(makeCertificates))
  await writeFile(file("ca.pem"), certs.ca)
  await writeFile(file("client.pem"), certs.client.cert)
  await writeFile(file("client.key"), certs.client.key)
  await writeFile(file("server.key"), certs.server.key)
  await writeFile(file("junk.pem"), "not a certificate\n")
  await writeFile(file("ok.json"), JSON.stringify(scenario))
  await writeFile(file("bad.json"), "{ devices: [")
  await writeFile(file("misspelt.json"), JSON.stringify({ ...scenario, migration: { downtimeLimitMS: 5 } }))
  await writeFile(
    file("fault.json"),
    JSON.stringify({
      ...scenario,
      faults: { source: { gpu1: [{ _tag: "FailArc", from: "RUNNING", to: "RUNNING_P2P" }] } }
    })
  )
  await writeFile(file("sim.json"), JSON.stringify({ stateSiz: 4096 }))
})
afterAll(() => rm(dir, { recursive: true, force: true }))

type Layer = "usage" | "input" | "operation"

interface Case {
  readonly what: string
  readonly args: () => ReadonlyArray<string>
  readonly layer: Layer
  /** The command has --json (usage errors print the JSON error object regardless). */
  readonly json: boolean
  /** The command prints its own report on stdout (a failed migration, a refused path) and no sentence on stderr. */
  readonly reportsOnStdout?: string
}

const exitCodeOf: Record<Layer, number> = { usage: 2, input: 2, operation: 1 }

const mtls = (key: string, ca: string) => [
  "--tls-cert",
  file("client.pem"),
  "--tls-key",
  file(key),
  "--tls-ca",
  file(ca)
]

const cases: ReadonlyArray<Case> = [
  // The parser refuses the command line.
  {
    what: "check with a misspelt flag",
    args: () => ["check", "--jsn", fixture("two-gpus.json")],
    layer: "usage",
    json: true
  },
  { what: "plan without --to", args: () => ["plan", fixture("two-gpus.json")], layer: "usage", json: true },
  { what: "an unknown command", args: () => ["chek"], layer: "usage", json: true },
  { what: "fsm path without --to", args: () => ["fsm", "path", "--from", "RUNNING"], layer: "usage", json: true },
  { what: "simulate without a scenario", args: () => ["simulate"], layer: "usage", json: true },
  { what: "demo with an unknown flag", args: () => ["demo", "--frobnicate"], layer: "usage", json: true },
  {
    what: "migrate with a misspelt flag",
    args: () => ["migrate", "--lisen", "0", file("ok.json")],
    layer: "usage",
    json: true
  },
  { what: "vfio-user info without --socket", args: () => ["vfio-user", "info"], layer: "usage", json: true },
  // The input files or values are wrong.
  { what: "check on a missing file", args: () => ["check", file("missing.json")], layer: "input", json: true },
  { what: "check on a file that is not JSON", args: () => ["check", file("bad.json")], layer: "input", json: true },
  {
    what: "plan to an unknown state",
    args: () => ["plan", fixture("two-gpus.json"), "--to", "STOPPED"],
    layer: "input",
    json: true
  },
  {
    what: "fsm path from an unknown state",
    args: () => ["fsm", "path", "--from", "RUNING", "--to", "STOP"],
    layer: "input",
    json: false
  },
  { what: "fsm table without STOP_COPY", args: () => ["fsm", "table", "--flags", "P2P"], layer: "input", json: false },
  {
    what: "simulate a scenario with a misspelt key",
    args: () => ["simulate", file("misspelt.json")],
    layer: "input",
    json: true
  },
  {
    what: "demo drawing into a .png",
    args: () => ["demo", "--timeline", file("demo.png")],
    layer: "input",
    json: true
  },
  {
    what: "migrate as both sides",
    args: () => ["migrate", "--listen", "0", "--connect", "127.0.0.1:1", file("ok.json")],
    layer: "input",
    json: true
  },
  {
    what: "migrate with a --tls-ca that holds no certificate",
    args: () => ["migrate", "--connect", "127.0.0.1:1", ...mtls("client.key", "junk.pem"), file("ok.json")],
    layer: "input",
    json: true
  },
  {
    what: "migrate with a key that is not the certificate's",
    args: () => ["migrate", "--connect", "127.0.0.1:1", ...mtls("server.key", "ca.pem"), file("ok.json")],
    layer: "input",
    json: true
  },
  {
    what: "vfio-user serve in a missing directory",
    args: () => ["vfio-user", "serve", "--socket", file("no-such-dir/gpu0.sock")],
    layer: "input",
    json: false
  },
  {
    what: "vfio-user serve with a misspelt --sim key",
    args: () => ["vfio-user", "serve", "--socket", file("gpu0.sock"), "--sim", file("sim.json")],
    layer: "input",
    json: false
  },
  // The operation fails.
  {
    what: "plan for a blocked group",
    args: () => ["plan", fixture("nic-without-p2p.json"), "--to", "STOP"],
    layer: "operation",
    json: true
  },
  {
    what: "plan a transition the kernel refuses",
    args: () => ["plan", fixture("two-gpus.json"), "--from", "STOP_COPY", "--to", "PRE_COPY"],
    layer: "operation",
    json: true
  },
  {
    what: "fsm path the kernel refuses",
    args: () => ["fsm", "path", "--from", "STOP_COPY", "--to", "PRE_COPY"],
    layer: "operation",
    json: false,
    reportsOnStdout: "refused (BlockedTransition)"
  },
  {
    what: "migrate to a destination nobody runs",
    args: () => ["migrate", "--connect", "127.0.0.1:1", file("ok.json")],
    layer: "operation",
    json: true
  },
  {
    what: "vfio-user info on a missing socket",
    args: () => ["vfio-user", "info", "--socket", file("missing.sock")],
    layer: "operation",
    json: true
  },
  {
    what: "simulate a migration that fails",
    args: () => ["simulate", file("fault.json")],
    layer: "operation",
    json: true,
    reportsOnStdout: "migration failed in"
  }
]

describe("every command, every layer failing", () => {
  for (const c of cases) {
    it(`${c.what}: one sentence and exit ${exitCodeOf[c.layer]}`, async () => {
      const r = await runCli(...c.args())
      expect(r.exitCode, r.stderr).toBe(exitCodeOf[c.layer])
      if (c.reportsOnStdout !== undefined) {
        expect(r.stdout.startsWith(c.reportsOnStdout), r.stdout).toBe(true)
        return
      }
      // A sentence naming the problem (then, for a bad file, one indented line per problem):
      // never the help, never a stack.
      expect(r.stderr).toMatch(/^lockstep: \S[^\n]*\n( {2}\S[^\n]*\n)*$/)
      expect(r.stderr).not.toMatch(/\n\s+at |file:\/\//)
      if (c.layer !== "operation") expect(r.stdout).toBe("")
      if (c.layer === "usage") expect(r.stderr).toContain("--help")
    })
    if (c.json || c.layer === "usage")
      it(`${c.what} --json: exactly one JSON object on stdout`, async () => {
        const r = await runCli(...c.args(), "--json")
        expect(r.exitCode, r.stderr).toBe(exitCodeOf[c.layer])
        const lines = r.stdout.trim().split("\n")
        expect(lines, r.stdout).toHaveLength(1)
        const output = JSON.parse(lines[0] ?? "")
        // A blocked plan answers with the check object; everything else says ok:false.
        if ("migratable" in output) expect(output.migratable).toBe(false)
        else expect(output.ok).toBe(false)
        if ("exitCode" in output) expect(output.exitCode).toBe(exitCodeOf[c.layer])
      })
  }
})

/** Runs the failure handler on `cause` as `main` does, capturing what it prints and the exit code. */
const handle = async (cause: Cause.Cause<unknown>, args: ReadonlyArray<string> = []) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const sink = (into: Array<string>) =>
    new Writable({
      write(chunk, _encoding, done) {
        into.push(String(chunk))
        done()
      }
    })
  const console = new NodeConsole({ stdout: sink(out), stderr: sink(err) })
  const exit = await Effect.runPromiseExit(
    reportFailure(args, cause).pipe(Effect.provideService(Console.Console, console))
  )
  const exitCode = await new Promise<number>((resolve) => Runtime.defaultTeardown(exit, resolve))
  return { stdout: out.join(""), stderr: err.join(""), exitCode, exit }
}

describe("a defect in Lockstep", () => {
  it("prints its cause and a hint to report it, without the stack, and exits 70", async () => {
    const defect = new TypeError("cannot read properties of undefined (reading 'arcs')")
    const r = await handle(Cause.die(defect))
    expect(r.exitCode).toBe(70)
    expect(r.stderr).toBe(
      `lockstep: internal error: TypeError: ${defect.message}. This is a bug in Lockstep, not a problem with your input: please report it with the command you ran and this message (LOCKSTEP_DEBUG=1 adds the stack)\n`
    )
    expect(r.stdout).toBe("")
  })

  it("treats a failure no command explained as a defect too, and prints a JSON error under --json", async () => {
    const r = await handle(Cause.fail(new RangeError("socket hang up")), ["plan", "--json"])
    expect(r.exitCode).toBe(70)
    expect(r.stderr).toContain("internal error: an unexplained failure: RangeError: socket hang up")
    expect(JSON.parse(r.stdout)).toEqual({
      ok: false,
      exitCode: 70,
      error: { _tag: "InternalError", message: expect.stringContaining("socket hang up") }
    })
  })

  it("lets an interruption through untouched: the signal's handler reports it", async () => {
    const r = await handle(Cause.interrupt())
    expect(Exit.isFailure(r.exit) && Cause.hasInterruptsOnly(r.exit.cause)).toBe(true)
    expect(r.stderr + r.stdout).toBe("")
  })
})
