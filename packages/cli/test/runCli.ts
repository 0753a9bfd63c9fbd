import { Console as NodeConsole } from "node:console"
import { Writable } from "node:stream"
import { NodeServices } from "@effect/platform-node"
import { main, Signals, type SignalsShape } from "@lockstep/cli"
import { Console, Effect, Runtime } from "effect"

/** What one CLI run printed, and how it ended. */
export interface CliRun {
  readonly stdout: string
  readonly stderr: string
  /** As the binary would exit: 0, the failure's exit code, or 130 when interrupted. */
  readonly exitCode: number
}

/** A CLI run still going (a server): what it printed so far, and a way to stop it. */
export interface RunningCli {
  readonly stdout: () => string
  readonly stderr: () => string
  /** Interrupts the run, as Ctrl-C or SIGTERM does the binary, and answers how it ended. */
  readonly stop: () => Promise<CliRun>
}

/** What an in-process run is given besides its arguments. */
export interface CliOptions {
  /** The signals the run sees (default: none ever arrive). */
  readonly signals?: SignalsShape
  /** Told of every chunk written to stderr, as it is written. */
  readonly onStderr?: (text: string) => void
}

const sink = (into: Array<string>, onWrite: (text: string) => void = () => {}) =>
  new Writable({
    write(chunk, _encoding, done) {
      into.push(String(chunk))
      onWrite(String(chunk))
      done()
    }
  })

const start = (args: ReadonlyArray<string>, signal?: AbortSignal, options: CliOptions = {}) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const console = new NodeConsole({ stdout: sink(out), stderr: sink(err, options.onStderr) })
  const program = main(args).pipe(Effect.provide(NodeServices.layer), Effect.provideService(Console.Console, console))
  const done = Effect.runPromiseExit(
    options.signals === undefined ? program : Effect.provideService(program, Signals, options.signals),
    { signal }
  ).then(
    (exit) =>
      new Promise<CliRun>((resolve) =>
        Runtime.defaultTeardown(exit, (exitCode) => resolve({ stdout: out.join(""), stderr: err.join(""), exitCode }))
      )
  )
  return { out, err, done }
}

/** Runs `lockstep <args>` in this process, capturing what it prints and its exit code. */
export const runCli = (...args: ReadonlyArray<string>): Promise<CliRun> => start(args).done

/** Runs `lockstep <args>` in this process with the signals and stderr observer of `options`. */
export const runCliWith = (options: CliOptions, ...args: ReadonlyArray<string>): Promise<CliRun> =>
  start(args, undefined, options).done

/** Starts `lockstep <args>` in this process without waiting for it to end. */
export const startCli = (...args: ReadonlyArray<string>): RunningCli => {
  const controller = new AbortController()
  const { out, err, done } = start(args, controller.signal)
  return {
    stdout: () => out.join(""),
    stderr: () => err.join(""),
    stop: () => {
      controller.abort()
      return done
    }
  }
}
