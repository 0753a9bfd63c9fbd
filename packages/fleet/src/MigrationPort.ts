import type { GroupRuntime } from "@lockstep/coordinator"
import {
  type DestinationOptions,
  Journal,
  JournalFailed,
  type MigrationEvent,
  type MigrationFailed,
  migrateDestination,
  migrateSource,
  type SourceOptions,
  type SourceSummary
} from "@lockstep/migration"
import type { Transport } from "@lockstep/stream"
import { Cause, Effect, Exit, Option } from "effect"
import type { MigrationSettings } from "./FleetFile.js"

/**
 * The fleet's one door into `@lockstep/migration`: everything the fleet uses of it passes
 * here, so that a reshaping of that package (its phases, its journal and transport services)
 * is absorbed in this module alone. What the fleet needs:
 * - the commit journal's rules, to keep the journal in the fleet's database (`FencedJournal`);
 * - both sessions of one VM's migration run together over a channel (`migratePair`).
 */

export type { MigrationEvent }
export { JournalFailed }
/** The journal of one migration: its rules, entries and ownership verdicts. */
export const makeJournal = Journal.make
/** A change to one journal entry (see `Journal.make`). */
export type JournalChange<A> = Journal.Change<A>
/** A commit journal. */
export type CommitJournal = Journal.Journal
/** One migration in a journal. */
export type JournalEntry = Journal.JournalEntry
/** Where a migration stands in a journal. */
export type JournalStatus = Journal.JournalStatus
/** The journal operation a failure names. */
export type JournalOperation = Journal.Operation

/** How one VM's migration ended, both sides settled. */
export type PairOutcome =
  | { readonly _tag: "Migrated"; readonly summary: SourceSummary }
  | {
      readonly _tag: "Failed"
      /** The first failure, as a sentence (the source's, else the destination's). */
      readonly reason: string
      /** Each side recovered as the migration package defines it (source RUNNING, destination parked). */
      readonly recovered: boolean
    }

/** What the two sessions of one VM's migration share. */
export interface PairOptions {
  readonly settings: MigrationSettings
  /** The journal both sides use: the source records its decisions, the destination fences with it. */
  readonly journal: Journal.Journal
  /** The migration id the destination proposes. */
  readonly migrationId: string
  /** Runs on the destination once its devices validated their data, before it votes. */
  readonly beforeVote?: Effect.Effect<void, { readonly message: string }> | undefined
  /** Told of the source's events. */
  readonly onEvent: (event: MigrationEvent) => void
}

const sessionOptions = (m: MigrationSettings) => ({
  ...(m.concurrency === undefined ? {} : { concurrency: m.concurrency }),
  ...(m.errorPolicy === undefined ? {} : { errorPolicy: m.errorPolicy }),
  ...(m.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: m.peerTimeoutMs }),
  ...(m.arcTimeoutMs === undefined ? {} : { arcTimeoutMs: m.arcTimeoutMs })
})

const sourceOptions = (m: MigrationSettings, o: PairOptions): SourceOptions => ({
  ...sessionOptions(m),
  journal: o.journal,
  onEvent: o.onEvent,
  ...(m.downtimeLimitMs === undefined ? {} : { downtimeLimitMs: m.downtimeLimitMs }),
  ...(m.maxRounds === undefined ? {} : { maxRounds: m.maxRounds }),
  ...(m.maxPrecopyMs === undefined ? {} : { maxPrecopyMs: m.maxPrecopyMs }),
  ...(m.onLimit === undefined ? {} : { onLimit: m.onLimit }),
  ...(m.precopy === undefined ? {} : { precopy: m.precopy }),
  ...(m.chunkBytes === undefined ? {} : { chunkBytes: m.chunkBytes })
})

const destinationOptions = (m: MigrationSettings, o: PairOptions): DestinationOptions => ({
  ...sessionOptions(m),
  decisionJournal: o.journal,
  migrationId: () => o.migrationId,
  ...(o.beforeVote === undefined ? {} : { beforeVote: o.beforeVote })
})

const failureOf = (exit: Exit.Exit<unknown, MigrationFailed>): MigrationFailed | string | undefined =>
  Exit.isSuccess(exit)
    ? undefined
    : Option.getOrElse(
        Cause.findErrorOption(exit.cause),
        () => Cause.pretty(exit.cause).split("\n")[0] ?? "interrupted"
      )

/**
 * Migrates `source`'s group into `destination`'s over the two ends of one channel: the
 * source session on `channel[0]`, the destination session on `channel[1]`, concurrently. Each
 * session recovers its own side on failure (the source back to RUNNING, the destination reset
 * and parked), as `@lockstep/migration` defines.
 */
export const migratePair = (
  source: GroupRuntime,
  destination: GroupRuntime,
  channel: readonly [Transport, Transport],
  options: PairOptions
): Effect.Effect<PairOutcome> =>
  Effect.gen(function* () {
    const m = options.settings
    const [sent, received] = yield* Effect.all(
      [
        Effect.exit(migrateSource(source, channel[0], sourceOptions(m, options))),
        Effect.exit(migrateDestination(destination, channel[1], destinationOptions(m, options)))
      ],
      { concurrency: 2 }
    )
    if (Exit.isSuccess(sent) && Exit.isSuccess(received)) return { _tag: "Migrated", summary: sent.value }
    const first = failureOf(sent) ?? failureOf(received)
    const recovered = [sent, received].every((exit) => {
      const failure = failureOf(exit)
      return failure === undefined || (typeof failure !== "string" && failure.recovered)
    })
    return {
      _tag: "Failed",
      reason: first === undefined ? "unknown" : typeof first === "string" ? first : first.message,
      recovered
    }
  })
