import { Journal, type JournalFailed } from "@lockstep/migration"
import { Console, Effect, Option, Schema } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { CliFailure, ExitCode, operationFailed } from "./CliFailure.js"

/*
 * `lockstep journal`: after a crash, the source's journal answers who owns the group. `show`
 * prints the ownership and the history; `resolve` records an operator's decision, the one way
 * to settle a migration that `lockstep migrate` refuses to follow (started and never decided,
 * committed and never confirmed, or completed).
 */

const journalArgument = Argument.String("JOURNAL").pipe(
  Argument.withDescription("The source's journal file (what lockstep migrate --journal was given)")
)

const jsonFlag = (shape: string) => Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription(shape))

const journalFailed = (error: JournalFailed): CliFailure =>
  operationFailed(`${error.message}; check that the path names the source's journal (lockstep migrate --journal)`)

/** Who owns the group after the newest migration, as JSON. */
const ownershipJson = (o: Journal.Ownership) => ({
  owner: o._tag === "DestinationOwns" ? "destination" : "source",
  verdict: o._tag,
  migration: o.migration ?? null,
  ...(o._tag === "DestinationOwns" ? { confirmed: o.confirmed } : {}),
  ...(o._tag === "SourceOwns" && o.reason !== undefined ? { reason: o.reason } : {}),
  description: Journal.describeOwnership(o)
})

const entryJson = (e: Journal.JournalEntry) => ({
  migration: e.migration,
  status: e.status,
  updatedAt: new Date(e.updatedAt).toISOString(),
  ...(e.reason === undefined ? {} : { reason: e.reason }),
  ...(e.pid === undefined ? {} : { pid: e.pid, host: e.host ?? null }),
  ...(e.status === "started" ? { inProgress: Journal.inProgress(e) } : {})
})

const entryLine = (e: Journal.JournalEntry): string =>
  [
    `    ${new Date(e.updatedAt).toISOString()}  ${e.migration}  ${e.status.padEnd(9)}`,
    ...(e.status === "started" ? [Journal.inProgress(e) ? " (in progress)" : " (stale)"] : []),
    ...(e.reason === undefined ? [] : [`  ${e.reason}`])
  ].join("")

const showCommand = Command.make(
  "show",
  {
    file: journalArgument,
    json: jsonFlag(
      'Print one JSON object: {"journal","ownership":{"owner","verdict","migration",…},"settled","unsettled"?:{…},"migrations":[{"migration","status","updatedAt",…}]}'
    )
  },
  (config) =>
    Effect.gen(function* () {
      const journal = Journal.file(config.file)
      const entries = yield* Effect.mapError(journal.entries, journalFailed)
      const ownership = Journal.ownershipOf(entries.at(-1))
      const unsettled = yield* Effect.mapError(Journal.unsettled(journal), journalFailed)
      if (config.json) {
        return yield* Console.log(
          JSON.stringify({
            journal: config.file,
            ownership: ownershipJson(ownership),
            settled: unsettled === undefined,
            ...(unsettled === undefined
              ? {}
              : {
                  unsettled: { migration: unsettled.migration, status: unsettled.status, message: unsettled.message }
                }),
            migrations: entries.map(entryJson)
          })
        )
      }
      yield* Console.log(
        [
          `journal ${config.file}`,
          `  ${Journal.describeOwnership(ownership)}`,
          ...(unsettled === undefined ? [] : [`  not settled: ${unsettled.message}`]),
          ...(entries.length === 0 ? [] : ["  history, oldest first:", ...entries.map(entryLine)])
        ].join("\n")
      )
    })
).pipe(
  Command.withDescription(
    "Print who owns the group by the source's journal (the newest migration decides), whether a new migration may start from it, and every migration it remembers. Exits 0 whatever it says."
  ),
  Command.withShortDescription("Who owns the group, and the journal's history.")
)

const resolveCommand = Command.make(
  "resolve",
  {
    file: journalArgument,
    owner: Flag.String("owner").pipe(
      Flag.withSchema(
        Schema.String.pipe(
          Schema.decodeTo(Schema.Literals(["source", "destination"]).annotate({ expected: "source or destination" }))
        )
      ),
      Flag.withMetavar("source|destination"),
      Flag.withDescription(
        "Give the group to the source (the destination must reset; the source may run and migrate again) or to the destination (it runs the group)"
      )
    ),
    migration: Flag.String("migration").pipe(
      Flag.withMetavar("ID"),
      Flag.withDescription("The migration to settle (default: the newest)"),
      Flag.optional
    ),
    json: jsonFlag('Print one JSON object: {"journal","migration","from","to","ownership":{…}}')
  },
  (config) =>
    Effect.gen(function* () {
      const owner: Journal.Owner = config.owner
      const journal = Journal.file(config.file)
      const done = yield* Journal.resolve(journal, owner, {
        migration: Option.getOrUndefined(config.migration),
        reason: `an operator gave the group to the ${owner} (lockstep journal resolve)`
      }).pipe(
        Effect.mapError((e) =>
          e.operation === "resolve"
            ? new CliFailure({ text: `cannot resolve: ${e.reason}`, exitCode: 1 })
            : journalFailed(e)
        )
      )
      const ownership = yield* Effect.mapError(Journal.ownership(journal, done.migration), journalFailed)
      const change = done.from === done.to ? `already ${done.to}` : `${done.from} → ${done.to}`
      yield* Console.log(
        config.json
          ? JSON.stringify({ journal: config.file, ...done, ownership: ownershipJson(ownership) })
          : [`migration ${done.migration}: ${change}`, `  ${Journal.describeOwnership(ownership)}`].join("\n")
      )
    })
).pipe(
  Command.withDescription(
    "Record an operator's decision about the journal's newest migration (or --migration ID): which side owns its group. To the source: a started migration is decided ABORT, a committed or completed one is given back (→ aborted); the destination must reset its devices. To the destination: a committed migration is marked completed (it runs the group); a stale started one is decided COMMIT, which only a destination that voted and still holds the validated state can honour. Refuses to give an aborted migration to the destination, and to decide one still in progress on this host. Exits 0 once recorded, 1 when refused."
  ),
  Command.withShortDescription("Settle who owns a migration's group."),
  Command.withExamples(({ commandPath }) => [
    {
      command: `${commandPath.join(" ")} /var/lib/lockstep/journal.json --owner source`,
      description: "The destination never resumed: give the group back to the source"
    }
  ])
)

/** `lockstep journal`: read and settle the source's journal after a crash. */
export const journalCommand = Command.make("journal").pipe(
  Command.withDescription(
    "Read the source's commit journal after a crash (who owns the group, the history) and settle a migration it leaves undecided or unconfirmed."
  ),
  Command.withShortDescription("Who owns the group after a crash; settle it."),
  Command.withSubcommands([showCommand, resolveCommand])
)

/**
 * Refuses to start a migration while the journal's newest migration is not settled (see
 * `Journal.unsettled`), before anything is built or contacted: prints why and how to settle it
 * (under `--json`, `{"ok":false,"role","exitCode":4,"error":{"_tag":"JournalUnsettled","message",
 * "migration","status","journal"}}`) and fails with exit code 4. `statuses`: which unsettled
 * statuses this side refuses.
 */
export const refuseUnsettledJournal = (
  path: string,
  role: "source" | "destination",
  statuses: ReadonlyArray<"started" | "committed" | "completed">,
  json: boolean
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    const found = yield* Effect.mapError(Journal.unsettled(Journal.file(path)), journalFailed)
    if (found === undefined || !statuses.includes(found.status)) return
    const text = `${role}: ${found.message}; "lockstep journal show ${path}" prints the journal`
    if (json)
      yield* Console.log(
        JSON.stringify({
          ok: false,
          role,
          exitCode: ExitCode.journalUnsettled,
          error: {
            _tag: found._tag,
            message: text,
            migration: found.migration,
            status: found.status,
            inProgress: found.inProgress,
            journal: path
          }
        })
      )
    return yield* new CliFailure({ text, exitCode: ExitCode.journalUnsettled, printedJson: json })
  })
