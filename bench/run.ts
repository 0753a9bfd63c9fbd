/**
 * Lockstep benchmarks. `npm run bench` prints the machine and a table of every figure;
 * `-- --json` prints one JSON object per figure per line, each row with its goal, verdict (met or
 * missed), min and median; `-- --quick` runs fewer repetitions of the same workloads;
 * `-- --figure 2,3` runs only those figures, in this process (what `node --cpu-prof` needs).
 * Without `--figure`, each figure runs in a process of its own, so that one figure's heap,
 * JIT state and peak RSS never leak into another's. Figures are printed, never asserted.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"
import { Effect } from "effect"
import { channelsFigure } from "./Channels.js"
import { defaultLatencies, downtimeFigure } from "./Downtime.js"
import { type Figure, figureMet, formatTable } from "./Figure.js"
import { fleetFigure } from "./Fleet.js"
import { describeMachine, type Machine, thisMachine } from "./Machine.js"
import { overheadFigure } from "./Overhead.js"
import { planningFigure } from "./Planning.js"
import { streamFigures } from "./StreamThroughput.js"

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    figure: { type: "string", multiple: true, default: [] }
  }
})
const quick = values.quick
const selected = new Set(values.figure.flatMap((f) => f.split(",")).map(Number))

const MiB = 2 ** 20

/** Every figure's settings, full and quick. */
const settings = {
  downtime: {
    sizes: [2, 8, 64],
    gpuRemainingBytes: 32 * MiB,
    nicRemainingBytes: 4 * MiB,
    channelBytesPerSecond: 10e9,
    latencies: defaultLatencies,
    sensitivity: [0.1, 10],
    repetitions: quick ? 1 : 7
  },
  overhead: {
    sizes: [256, 1024],
    warmup: 3,
    repetitions: quick ? 3 : 9,
    checkedSizes: [256, 1024]
  },
  planning: { sizes: [1024, 4096] as const, warmup: quick ? 2 : 5, repetitions: quick ? 5 : 11 },
  fleet: {
    vms: 20,
    gpus: 8,
    gpuStateBytes: 64 * 1024,
    nicBytesPerSecond: MiB / 2,
    arcLatencyMs: 2,
    overheadVms: 10,
    overheadConcurrency: 2,
    repetitions: quick ? 1 : 7
  },
  stream: {
    devices: 8,
    deviceStateBytes: 128 * MiB,
    warmup: 1,
    repetitions: quick ? 2 : 7
  },
  channels: {
    devices: 8,
    deviceStateBytes: 32 * MiB,
    channels: [1, 2, 4],
    warmup: 1,
    repetitions: quick ? 2 : 7
  }
}

/** The figures a process runs together: 4 and 5 come from the same runs. */
const processes: ReadonlyArray<ReadonlyArray<number>> = [[1], [2], [3], [4, 5], [6], [7]]

/** One line of `--json` output. */
interface FigureLine extends Figure {
  readonly met: boolean
  readonly verdict: "met" | "missed"
  readonly quick: boolean
  readonly machine: Machine
}

const isFigureLine = (u: unknown): u is FigureLine =>
  typeof u === "object" && u !== null && "figure" in u && "rows" in u && Array.isArray(u.rows)

/** A line of a child's output as JSON, or `undefined` if it is not JSON. */
const parseLine = (line: string): unknown => {
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

/** Runs the selected figures here, one JSON line or nothing per figure as it completes. */
const runHere = (wanted: ReadonlySet<number>, machine: Machine): Effect.Effect<Array<Figure>> =>
  Effect.gen(function* () {
    const figures: Array<Figure> = []
    const report = (figure: Figure) => {
      if (!wanted.has(figure.figure)) return
      figures.push(figure)
      const met = figureMet(figure)
      if (values.json) console.log(JSON.stringify({ ...figure, met, verdict: met ? "met" : "missed", quick, machine }))
    }
    if (wanted.has(1)) report(yield* downtimeFigure(settings.downtime))
    if (wanted.has(2)) report(yield* overheadFigure(settings.overhead))
    if (wanted.has(3)) report(yield* planningFigure(settings.planning))
    if (wanted.has(4) || wanted.has(5)) for (const figure of yield* streamFigures(settings.stream)) report(figure)
    if (wanted.has(6)) report(yield* fleetFigure(settings.fleet))
    if (wanted.has(7)) report(yield* channelsFigure(settings.channels))
    return figures
  })

/** Runs some figures in a child process of this script and collects their JSON lines. */
const runChild = (figures: ReadonlyArray<number>): Effect.Effect<Array<FigureLine>, Error> =>
  Effect.callback((resume) => {
    const args = [
      fileURLToPath(import.meta.url),
      "--figure",
      figures.join(","),
      "--json",
      ...(quick ? ["--quick"] : [])
    ]
    const child = spawn(process.execPath, [...process.execArgv, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (text: string) => {
      out += text
    })
    child.on("error", (error) => resume(Effect.fail(error)))
    child.on("close", (code) => {
      const lines = out.split("\n").filter((line) => line.trim() !== "")
      const parsed = lines.map(parseLine).filter(isFigureLine)
      // Anything else a figure's libraries wrote to stdout (the fleet's cluster logs a warning
      // when its runners are slow to answer) is passed on to stderr, not taken for a figure.
      for (const line of lines) if (!isFigureLine(parseLine(line))) process.stderr.write(`${line}\n`)
      resume(
        code === 0 && parsed.length === figures.length
          ? Effect.succeed(parsed)
          : Effect.fail(new Error(`figures ${figures.join(", ")}: the benchmark process exited with ${code}`))
      )
    })
    return Effect.sync(() => {
      child.kill()
    })
  })

const main = Effect.gen(function* () {
  const machine = thisMachine()
  if (!values.json) console.log(describeMachine(machine))
  let figures: Array<Figure>
  if (selected.size > 0) figures = yield* runHere(selected, machine)
  else {
    figures = []
    for (const group of processes) {
      const lines = yield* runChild(group)
      for (const line of lines) {
        if (values.json) console.log(JSON.stringify(line))
        figures.push(line)
      }
    }
  }
  if (!values.json) {
    console.log(formatTable(figures))
    const missed = figures.filter((f) => !figureMet(f)).map((f) => f.figure)
    console.log(missed.length === 0 ? "every goal met" : `goals missed in figure ${missed.join(", ")}`)
  }
})

Effect.runPromise(main).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
