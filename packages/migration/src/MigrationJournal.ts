import { Context, Layer } from "effect"
import { defaultJournalPath, type FileJournalOptions, file, type Journal, memory } from "./Journal.js"

/**
 * The journal a migration records its commit decision in, as a service: the source's (where
 * it decides) and, when the destination can reach it, the destination's `decisionJournal`.
 * `Migration.source` needs it; `migrateSource` and `migrateDestination` read it when their
 * options give no journal.
 */
export class MigrationJournal extends Context.Service<MigrationJournal, Journal>()(
  "@lockstep/migration/MigrationJournal"
) {
  /** A journal of your own (a database, or one shared by both sides of a test). */
  static readonly layer = (journal: Journal): Layer.Layer<MigrationJournal> => Layer.succeed(MigrationJournal, journal)

  /** The file journal at `path` (default: `lockstep-journal.json` in the working directory). */
  static readonly file = (
    path: string = defaultJournalPath,
    options: FileJournalOptions = {}
  ): Layer.Layer<MigrationJournal> => Layer.sync(MigrationJournal, () => file(path, options))

  /** A fresh journal in memory (each build of the layer its own). */
  static readonly memory: Layer.Layer<MigrationJournal> = Layer.sync(MigrationJournal, memory)
}
