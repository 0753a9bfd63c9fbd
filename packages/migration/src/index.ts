/**
 * Live migration of a group of VFIO devices between two groups joined by one channel (or several).
 *
 * @packageDocumentation
 */
export * as Compatibility from "./Compatibility.js"
export { migrateDestination } from "./DestinationSession.js"
export {
  ArcTimings,
  type AssumedStopCopyLength,
  criticalPathMs,
  type DowntimeEstimate,
  describeAssumedLengths,
  type EstimateInputs,
  estimateDowntime,
  PessimisticStopCopyLength,
  StopCopyLengths
} from "./Estimate.js"
export {
  type DestinationSummary,
  type DeviceTotals,
  type EventSink,
  feed,
  type MigrationEvent,
  type SourceSummary,
  type SummaryBase,
  type SwitchoverDecision,
  type SwitchoverReason
} from "./Events.js"
export { checkManifest, describeRefusal, manifestOf, type Refusal } from "./Handshake.js"
export * as Journal from "./Journal.js"
export * as JournalLock from "./JournalLock.js"
export * as Migration from "./Migration.js"
export * from "./MigrationError.js"
export { MigrationEvents } from "./MigrationEvents.js"
export { MigrationJournal } from "./MigrationJournal.js"
export { MigrationChannels, MigrationTransport } from "./MigrationTransport.js"
export type { DestinationOptions, LimitPolicy, SessionOptions, SourceOptions } from "./Options.js"
export { type Phase, Phases, type Side } from "./Phase.js"
export {
  type RestoreOptions,
  type RestoreSummary,
  restoreGroup,
  type SaveOptions,
  type SaveSummary,
  saveGroup
} from "./Snapshot.js"
export { migrateSource } from "./SourceSession.js"
