import type { ErrorPolicy } from "@lockstep/coordinator"
import type { DestinationOptions, SourceOptions } from "@lockstep/migration"
import type { MigrationSettings } from "./ScenarioDocument.js"

/*
 * The migration options a scenario sets, as the options of each side's session (journal,
 * transport and events are the caller's).
 */

const sessionOptionsOf = (m: MigrationSettings) => ({
  ...(m.ioConcurrency === undefined ? {} : { ioConcurrency: m.ioConcurrency }),
  ...(m.arcConcurrency === undefined ? {} : { arcConcurrency: m.arcConcurrency }),
  ...(m.errorPolicy === undefined ? {} : { errorPolicy: m.errorPolicy satisfies ErrorPolicy }),
  ...(m.peerTimeoutMs === undefined ? {} : { peerTimeoutMs: m.peerTimeoutMs }),
  ...(m.arcTimeoutMs === undefined ? {} : { arcTimeoutMs: m.arcTimeoutMs })
})

/** The source options a scenario sets (journal and events are the caller's). */
export const sourceOptionsOf = (m: MigrationSettings): SourceOptions => ({
  ...sessionOptionsOf(m),
  ...(m.downtimeLimitMs === undefined ? {} : { downtimeLimitMs: m.downtimeLimitMs }),
  ...(m.bandwidthLimit === undefined ? {} : { bandwidthLimit: m.bandwidthLimit }),
  ...(m.maxRounds === undefined ? {} : { maxRounds: m.maxRounds }),
  ...(m.maxPrecopyMs === undefined ? {} : { maxPrecopyMs: m.maxPrecopyMs }),
  ...(m.onLimit === undefined ? {} : { onLimit: m.onLimit }),
  ...(m.precopy === undefined ? {} : { precopy: m.precopy }),
  ...(m.chunkBytes === undefined ? {} : { chunkBytes: m.chunkBytes }),
  ...(m.channels === undefined ? {} : { channels: m.channels })
})

/** The destination options a scenario sets. */
export const destinationOptionsOf = (m: MigrationSettings): DestinationOptions => sessionOptionsOf(m)
