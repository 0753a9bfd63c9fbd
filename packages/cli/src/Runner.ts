import { NodeServices } from "@effect/platform-node"
import { Cause, Context, Effect, Exit, Logger, Runtime } from "effect"
import { errorJson, wantsJson } from "./ExitCode.js"
import { main } from "./Main.js"
import { makeSignals, Signals, type StopSignal, signalExitCode, stopBoundMs } from "./Signals.js"

const say = (text: string) => process.stderr.write(`lockstep: ${text}\n`)

/**
 * Runs `lockstep <args>` as this process's main program: the exit code is `Outcome`'s, and
 * SIGINT/SIGTERM follow `Signals`' rule. A first signal goes to the command that holds it (a
 * migration rolls back and reports), or else interrupts the run; the process exits within
 * `stopBoundMs` of it regardless; a second signal exits at once, saying what may be left.
 */
export const runMain = (args: ReadonlyArray<string>): void => {
  let first: StopSignal | undefined
  let interruptRun = (_signal: StopSignal): void => {}
  const manual = Effect.runSync(makeSignals((signal) => interruptRun(signal)))

  const onSignal = (signal: StopSignal) => {
    if (first !== undefined) {
      const risk = manual.risk()
      say(
        `second signal (${signal}): exiting at once${risk === undefined ? "; nothing was in flight" : `, without finishing the rollback: ${risk}`}`
      )
      process.exit(signalExitCode[signal])
    }
    first = signal
    const risk = manual.risk()
    if (risk !== undefined) say(`${signal}: stopping and rolling back (a second signal exits at once)`)
    else say(`${signal}: stopping`)
    setTimeout(() => {
      const left = manual.risk()
      say(`still not stopped ${stopBoundMs / 1000} s after ${signal}: exiting${left === undefined ? "" : `; ${left}`}`)
      process.exit(signalExitCode[signal])
    }, stopBoundMs).unref()
    manual.send(signal)
  }

  // Listening before the command starts: running it begins synchronously (arguments, files),
  // and a signal meanwhile must find a handler (it is heard once that synchronous run yields).
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  const fiber = Effect.runFork(
    main(args).pipe(
      Effect.provide(NodeServices.layer),
      Effect.provideService(Signals, manual.signals),
      // Standard output is the command's own (a --json report is nothing but JSON): what Effect
      // or a library logs on the way (a cluster's warning under load) goes to standard error.
      Effect.provideService(Logger.LogToStderr, true)
    )
  )
  interruptRun = (signal) =>
    fiber.interruptUnsafe(undefined, Context.make(Runtime.InterruptExitCode, signalExitCode[signal]))
  // The run keeps the event loop alive only through what it waits on; this keeps it alive while
  // it waits on nothing but a signal.
  const keepAlive = setInterval(() => {}, 2 ** 31 - 1)
  fiber.addObserver((exit) => {
    clearInterval(keepAlive)
    // Interrupted as a whole (no command held the signal): nothing was in flight, but --json
    // still owes its one object.
    if (first !== undefined && Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) && wantsJson(args))
      process.stdout.write(`${errorJson(signalExitCode[first], `${first}: stopped; nothing was in flight`)}\n`)
    Runtime.defaultTeardown(exit, (code) => {
      process.exitCode = code
      // Failed, or stopped by a signal: exit now, even if a socket or timer would keep the loop alive.
      if (first !== undefined || code !== 0) process.exit(code)
    })
  })
}
