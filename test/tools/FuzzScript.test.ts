/*
 * `npm run fuzz` reads FUZZ_MINUTES when no --minutes is given (README: "FUZZ_MINUTES=… to
 * change"). A value it cannot use is refused naming FUZZ_MINUTES, before any fuzzing starts.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"

const script = fileURLToPath(new URL("../fuzz/run.ts", import.meta.url))

/** Runs the fuzz script with `env` added; kills it if it starts fuzzing instead of answering. */
const runScript = (env: Record<string, string>, args: ReadonlyArray<string> = []) =>
  new Promise<{ readonly code: number | null; readonly stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: "pipe" })
    let stderr = ""
    child.stderr.on("data", (d) => {
      stderr += String(d)
    })
    const guard = setTimeout(() => child.kill("SIGKILL"), 20_000)
    child.on("close", (code) => {
      clearTimeout(guard)
      resolve({ code, stderr })
    })
  })

describe("npm run fuzz", () => {
  it("takes its duration from FUZZ_MINUTES when --minutes is not given", async () => {
    const r = await runScript({ FUZZ_MINUTES: "0" })
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("FUZZ_MINUTES must be a positive number, not 0")
  })

  it("lets --minutes win over FUZZ_MINUTES", async () => {
    const r = await runScript({ FUZZ_MINUTES: "5" }, ["--minutes", "0"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--minutes must be a positive number, not 0")
  })
})
