import { Console as NodeConsole } from "node:console"
import { Writable } from "node:stream"
import { NodeServices } from "@effect/platform-node"
import { main } from "@lockstep/cli"
import { Cause, Console, Effect, Exit, Runtime } from "effect"

/** What one CLI run printed, and how it ended. */
export interface CliRun {
  readonly stdout: string
  readonly stderr: string
  readonly exitCode: number
}

const sink = (into: Array<string>) =>
  new Writable({
    write(chunk, _encoding, done) {
      into.push(String(chunk))
      done()
    }
  })

/** Runs `lockstep <args>` in this process, capturing what it prints and its exit code. */
export const runCli = async (...args: ReadonlyArray<string>): Promise<CliRun> => {
  const out: Array<string> = []
  const err: Array<string> = []
  const console = new NodeConsole({ stdout: sink(out), stderr: sink(err) })
  const exit = await Effect.runPromiseExit(
    main(args).pipe(Effect.provide(NodeServices.layer), Effect.provideService(Console.Console, console))
  )
  const exitCode = Exit.isSuccess(exit) ? 0 : Runtime.getErrorExitCode(Cause.squash(exit.cause))
  return { stdout: out.join(""), stderr: err.join(""), exitCode }
}
