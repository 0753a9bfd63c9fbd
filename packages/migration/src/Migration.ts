import { GroupRuntime } from "@lockstep/coordinator"
import { Effect } from "effect"
import { migrateDestination } from "./DestinationSession.js"
import type { DestinationSummary, SourceSummary } from "./Events.js"
import type { MigrationFailed } from "./MigrationError.js"
import type { MigrationEvents } from "./MigrationEvents.js"
import { MigrationJournal } from "./MigrationJournal.js"
import { MigrationTransport } from "./MigrationTransport.js"
import type { DestinationOptions, SourceOptions } from "./Options.js"
import { migrateSource } from "./SourceSession.js"

/**
 * A migration's two sides written against services: the group (`GroupRuntime`: a
 * `SimulatedGroup.layer`, a `VfioUserGroup.layer`, …), the channel (`MigrationTransport`), the
 * journal (`MigrationJournal`) and, optionally, the event sink (`MigrationEvents`). Swap a
 * layer to run the same program over another backend, channel or journal. The same sessions as
 * `migrateSource` and `migrateDestination`: options given here win over the context.
 */

/** The source side (see `migrateSource`), over the context's group, channel and journal. */
export const source = (
  options: SourceOptions = {}
): Effect.Effect<SourceSummary, MigrationFailed, GroupRuntime | MigrationTransport | MigrationJournal> =>
  Effect.gen(function* () {
    const runtime = yield* GroupRuntime
    const transport = yield* MigrationTransport
    const journal = options.journal ?? (yield* MigrationJournal)
    return yield* migrateSource(runtime, transport, { ...options, journal })
  })

/**
 * The destination side (see `migrateDestination`), over the context's group and channel; the
 * context's `MigrationJournal`, if any, is its `decisionJournal` (the source's journal, when
 * this side can reach it).
 */
export const destination = (
  options: DestinationOptions = {}
): Effect.Effect<DestinationSummary, MigrationFailed, GroupRuntime | MigrationTransport> =>
  Effect.gen(function* () {
    const runtime = yield* GroupRuntime
    const transport = yield* MigrationTransport
    return yield* migrateDestination(runtime, transport, options)
  })

/** The services a migration side may read from its context. */
export type Services = GroupRuntime | MigrationTransport | MigrationJournal | MigrationEvents
