/*
 * A migration over TCP loopback whose channel is given by MigrationTransport's layers: the
 * destination's by `accept` on a listener, the source's by `connect` to it, each group by
 * `SimulatedGroup.layer`. On real time.
 */
import { describe, expect, it } from "@effect/vitest"
import { decodeGroup, stop } from "@lockstep/coordinator"
import { Journal, Migration, MigrationJournal, MigrationTransport } from "@lockstep/migration"
import { SimulatedGroup } from "@lockstep/sim"
import { TcpTransport } from "@lockstep/stream"
import { Effect, Layer } from "effect"
import { allIn, assertSafe, threeGpus } from "../../packages/migration/test/Harness.js"

describe("MigrationTransport's TCP layers", () => {
  it.live("a source connecting and a destination accepting through layers migrate the group", () =>
    Effect.gen(function* () {
      const group = yield* decodeGroup(threeGpus)
      const listener = yield* TcpTransport.listen({})
      const journal = Journal.memory()
      const limits = { peerTimeoutMs: 10_000, arcTimeoutMs: 2_000 }
      const simulated = (role?: string) =>
        SimulatedGroup.layer(group, { seed: 3, writesPerSecond: 2000, ...(role === undefined ? {} : { role }) })

      const source = Effect.gen(function* () {
        const summary = yield* Migration.source(limits)
        return { summary, sim: yield* SimulatedGroup }
      }).pipe(
        Effect.provide(
          Layer.mergeAll(
            simulated(),
            MigrationTransport.connect({ host: "127.0.0.1", port: listener.port, timeout: 5_000 }),
            MigrationJournal.layer(journal)
          )
        )
      )
      const destination = Effect.gen(function* () {
        const sim = yield* SimulatedGroup
        yield* stop(sim)
        const summary = yield* Migration.destination(limits)
        return { summary, sim }
      }).pipe(
        Effect.provide(
          Layer.mergeAll(simulated("destination"), MigrationTransport.accept(listener), MigrationJournal.layer(journal))
        )
      )
      const [src, dst] = yield* Effect.all([source, destination], { concurrency: 2 })

      expect(src.summary.confirmed).toBe(true)
      expect(dst.summary.migration).toBe(src.summary.migration)
      expect(dst.summary.bytes).toBe(src.summary.bytes)
      expect(yield* allIn(src.sim, "STOP_COPY")).toBe(true)
      expect(yield* allIn(dst.sim, "RUNNING")).toBe(true)
      expect(yield* Journal.ownership(journal)).toEqual({
        _tag: "DestinationOwns",
        migration: src.summary.migration,
        confirmed: true
      })
      yield* assertSafe({ source: src.sim, destination: dst.sim })
    }).pipe(Effect.scoped)
  )
})
