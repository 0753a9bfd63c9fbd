import { errorJson, wantsJson } from "./ExitCode.js"

type StopSignal = "SIGINT" | "SIGTERM"

const args = process.argv.slice(2)

// Loading the CLI takes a moment; a signal meanwhile finds nothing started: say so and exit.
const early = (signal: StopSignal) => {
  const text = `${signal}: stopped before anything started`
  process.stderr.write(`lockstep: ${text}\n`)
  if (wantsJson(args)) process.stdout.write(`${errorJson(signal === "SIGINT" ? 130 : 143, text)}\n`)
  process.exit(signal === "SIGINT" ? 130 : 143)
}
process.on("SIGINT", early)
process.on("SIGTERM", early)

const { runMain } = await import("./Runner.js")
// runMain adds its own handlers before it starts the command; only then may these go. Were no
// handler listening for a moment, a signal then would get node's default (killed by the signal,
// exit code and report lost). Signals reach handlers only between synchronous runs, so the two
// never both see one.
runMain(args)
process.off("SIGINT", early)
process.off("SIGTERM", early)
