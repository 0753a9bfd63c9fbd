import { writeFile } from "node:fs/promises"
import { Console, Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { invalidInput } from "./CliFailure.js"
import { readEventsFile } from "./EventsFile.js"
import { makeMigrationTimeline } from "./MigrationTimeline.js"
import { checkTimelineFile } from "./TimelineFile.js"

/** `lockstep timeline EVENTS.jsonl OUT.svg`: the timeline of a migration, drawn afterwards from its events file. */
export const timelineCommand = Command.make(
  "timeline",
  {
    events: Argument.String("EVENTS.jsonl").pipe(
      Argument.withDescription("An events file written by --events (lockstep simulate, demo or migrate --local)")
    ),
    out: Argument.String("OUT.svg").pipe(Argument.withDescription("Where to write the picture (standalone SVG)"))
  },
  (config) =>
    Effect.gen(function* () {
      yield* checkTimelineFile(config.out, "OUT.svg")
      const run = yield* readEventsFile(config.events).pipe(Effect.mapError((e) => invalidInput(e.message)))
      const timeline = makeMigrationTimeline(run.header.source, run.header.destination)
      for (const event of run.events) timeline.onEvent(event)
      const svg = timeline.render(run.header.title, run.observed ?? {})
      yield* Effect.tryPromise({
        try: () => writeFile(config.out, svg),
        catch: (cause) =>
          invalidInput(
            `cannot write ${config.out}: ${cause instanceof Error ? cause.message : String(cause)}; name a file in a directory you can write to`
          )
      })
      yield* Console.log(
        `timeline: ${config.out} (${run.events.length} events${run.observed === undefined ? "; the file has no closing line: the run stopped midway, and the P2P violations are not known" : ""})`
      )
    })
).pipe(
  Command.withDescription(
    "Draw the timeline of a migration afterwards, from the events file --events wrote: the same picture --timeline draws during the run (a lane per device of both groups, its states and arcs, the phases, the downtime window, any P2P violation). A file whose run stopped midway (no closing line) is drawn up to its last event. Exits 0 when drawn, 2 when a line of the file is not what --events writes (the message names the line)."
  ),
  Command.withShortDescription("Draw a migration's timeline from its events file."),
  Command.withExamples(({ commandPath }) => [
    {
      command: `${commandPath.join(" ")} run.jsonl run.svg`,
      description: "After lockstep simulate scenario.json --events run.jsonl"
    }
  ])
)
