/*
 * The built `lockstep` binary as a child process: what it prints, when it exits, and signals
 * sent to it. Shared by the suites that need a real process (signals, TCP, TLS).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../../packages/cli/bin/lockstep.js", import.meta.url))

/** How a process ended, and what it printed. */
export interface Exited {
  readonly code: number | null
  /** The signal that killed it, if one did (its code is then null). */
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** `Date.now()` when it exited. */
  readonly at: number
}

/** A running `lockstep` process. */
export interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<Exited>
  readonly stdout: () => string
  readonly stderr: () => string
  /** Sends a signal and answers when it was sent (`Date.now()`). */
  readonly signal: (signal: NodeJS.Signals) => number
}

/** Starts `lockstep <args>` (stdin closed). */
export const startLockstep = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Running => {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env }
  })
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (d) => {
    stdout += String(d)
  })
  child.stderr?.on("data", (d) => {
    stderr += String(d)
  })
  const exited = new Promise<Exited>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, at: Date.now() }))
  )
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    signal: (signal) => {
      child.kill(signal)
      return Date.now()
    }
  }
}

/** Polls `probe` every 10 ms until it answers, failing after `timeoutMs`. */
export const waitFor = async <A>(what: string, probe: () => A | undefined, timeoutMs = 30_000): Promise<A> => {
  const until = Date.now() + timeoutMs
  for (;;) {
    const found = probe()
    if (found !== undefined) return found
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** Waits `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
