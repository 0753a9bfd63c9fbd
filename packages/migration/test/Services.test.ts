import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, stop } from "@lockstep/coordinator"
import {
  Journal,
  Migration,
  type MigrationEvent,
  MigrationEvents,
  MigrationJournal,
  MigrationTransport
} from "@lockstep/migration"
import { runOnVirtualTime, SimulatedGroup } from "@lockstep/sim"
import { MemoryTransport } from "@lockstep/stream"
import { Effect, Layer } from "effect"
import { allIn, assertSafe, threeGpus } from "./Harness.js"

const limits = { peerTimeoutMs: 5_000, arcTimeoutMs: 1_000 }

/** The sides a list of events came from (events without a side are left out). */
const sidesOf = (events: ReadonlyArray<MigrationEvent>): ReadonlySet<string> =>
  new Set(events.flatMap((e) => ("side" in e ? [e.side] : [])))

describe("a migration written against services", () => {
  it.effect(
    "Migration.source and Migration.destination run over the layers of a group, a channel, a journal and an event sink",
    () =>
      Effect.gen(function* () {
        const group = yield* decodeGroup(threeGpus)
        const [a, b] = yield* MemoryTransport.pair()
        // One journal for both sides: the destination can reach the source's (same host).
        const journal = Journal.memory()
        const fromService: Array<MigrationEvent> = []
        const fromOption: Array<MigrationEvent> = []
        const simulated = (role?: string) =>
          SimulatedGroup.layer(group, { seed: 1, writesPerSecond: 2000, ...(role === undefined ? {} : { role }) })
        const shared = Layer.mergeAll(
          MigrationJournal.layer(journal),
          MigrationEvents.layer((e) => fromService.push(e))
        )

        // The source gives an `onEvent` of its own: it wins over the context's sink.
        const source = Effect.gen(function* () {
          const summary = yield* Migration.source({ ...limits, onEvent: (e) => fromOption.push(e) })
          return { summary, sim: yield* SimulatedGroup }
        }).pipe(Effect.provide(Layer.mergeAll(simulated(), MigrationTransport.layer(a), shared)))
        const destination = Effect.gen(function* () {
          const sim = yield* SimulatedGroup
          yield* stop(sim)
          const summary = yield* Migration.destination(limits)
          return { summary, sim }
        }).pipe(Effect.provide(Layer.mergeAll(simulated("destination"), MigrationTransport.layer(b), shared)))

        const [src, dst] = yield* runOnVirtualTime(Effect.all([source, destination], { concurrency: 2 }))

        // A migration that succeeded: the source stays stopped, the destination runs, the journal
        // the destination read from its context says the destination owns the group, confirmed.
        expect(dst.summary.migration).toBe(src.summary.migration)
        expect(yield* allIn(src.sim, "STOP_COPY")).toBe(true)
        expect(yield* allIn(dst.sim, "RUNNING")).toBe(true)
        expect(yield* Journal.ownership(journal)).toEqual({
          _tag: "DestinationOwns",
          migration: src.summary.migration,
          confirmed: true
        })
        yield* assertSafe({ source: src.sim, destination: dst.sim })

        // Each side's events went where its options, or else its context, said.
        expect(sidesOf(fromOption)).toEqual(new Set(["source"]))
        expect(sidesOf(fromService)).toEqual(new Set(["destination"]))
        expect(fromOption.at(-1)?._tag).toBe("Completed")
        expect(fromService.at(-1)?._tag).toBe("Completed")
      })
  )

  it.effect("MigrationJournal.memory gives each build a journal of its own, empty", () =>
    Effect.gen(function* () {
      const record = Effect.gen(function* () {
        const journal = yield* MigrationJournal
        yield* journal.begin("m")
        return yield* journal.entries
      })
      expect((yield* Effect.provide(record, MigrationJournal.memory)).map((e) => e.migration)).toEqual(["m"])
      expect((yield* Effect.provide(record, MigrationJournal.memory)).map((e) => e.migration)).toEqual(["m"])
    })
  )
})
