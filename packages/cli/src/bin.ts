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
process.off("SIGINT", early)
process.off("SIGTERM", early)
runMain(args)
