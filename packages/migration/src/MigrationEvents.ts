import { Context, Layer } from "effect"
import type { EventSink } from "./Events.js"

/**
 * Where a migration's events go, as a service: the sessions tell it every event, synchronously,
 * unless their options give an `onEvent` of their own. Without either, events go nowhere.
 */
export class MigrationEvents extends Context.Service<MigrationEvents, EventSink>()(
  "@lockstep/migration/MigrationEvents"
) {
  /** Events told to `sink`. */
  static readonly layer = (sink: EventSink): Layer.Layer<MigrationEvents> => Layer.succeed(MigrationEvents, sink)
}
