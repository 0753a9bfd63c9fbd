/*
 * The channel cut at random byte offsets, in either direction (fast-check): whatever the offset,
 * both sides end (never a hang), each with a summary or one typed error, and the group has
 * exactly one owner: either the journal says COMMIT, the destination runs and the source is
 * stopped, or it does not, the source runs and the destination is parked in STOP.
 */
import { describe, expect, it } from "@effect/vitest"
import { runOnVirtualTime } from "@lockstep/sim"
import type { Transport } from "@lockstep/stream"
import { Effect } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import {
  allIn,
  assertSafe,
  checkOutcome,
  cutAfter,
  failureOf,
  makePair,
  migrate,
  pairWith,
  stallAfter,
  threeGpus
} from "../../packages/migration/test/Harness.js"

const options = { source: { bandwidthLimit: 4 * 1024 * 1024 } }

/** Bytes each side writes in an uncut migration. */
const measure = Effect.gen(function* () {
  const written = { source: 0, destination: 0 }
  const counting =
    (side: "source" | "destination") =>
    (t: Transport): Transport => ({
      ...t,
      write: (chunks) => {
        written[side] += chunks.reduce((n, c) => n + c.length, 0)
        return t.write(chunks)
      }
    })
  const pair = yield* runOnVirtualTime(makePair(threeGpus))
  yield* runOnVirtualTime(
    migrate(pair, { ...options, transports: pairWith(counting("source"), counting("destination")) })
  )
  return written
})

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Effect.provide(effect, TestClock.layer()))

describe("the channel cut at any byte", () => {
  it.effect(
    "in either direction, anywhere, at the end especially: typed errors or a committed migration, never a hang",
    () =>
      Effect.gen(function* () {
        const written = yield* measure
        const offset = (total: number) =>
          fc.oneof(fc.integer({ min: 0, max: total }), fc.integer({ min: Math.max(0, total - 160), max: total }))
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              fc.oneof(
                offset(written.source).map((n) => ["source", n] as const),
                offset(written.destination).map((n) => ["destination", n] as const)
              ),
              ([side, n]) =>
                run(
                  Effect.gen(function* () {
                    const pair = yield* runOnVirtualTime(makePair(threeGpus))
                    const transports =
                      side === "source"
                        ? pairWith((t) => cutAfter(t, n))
                        : pairWith(
                            (t) => t,
                            (t) => cutAfter(t, n)
                          )
                    const out = yield* runOnVirtualTime(migrate(pair, { ...options, transports }), { limitMs: 120_000 })
                    yield* checkOutcome(pair, out)
                  })
                )
            ),
            { numRuns: 60, seed: 20240611 }
          )
        )
      })
  )
})

describe("a peer that goes silent", () => {
  const silent = (sourceTimeoutMs: number, destinationTimeoutMs: number) =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const out = yield* runOnVirtualTime(
        migrate(pair, {
          ...options,
          transports: pairWith((t) => stallAfter(t, 100_000)),
          source: { ...options.source, peerTimeoutMs: sourceTimeoutMs },
          destination: { peerTimeoutMs: destinationTimeoutMs }
        }),
        { limitMs: 60_000 }
      )
      const source = yield* failureOf(out.source)
      const destination = yield* failureOf(out.destination)
      for (const error of [source, destination]) expect(error).toMatchObject({ phase: "precopy", recovered: true })
      expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      yield* assertSafe(pair)
      return { source, destination }
    })

  it.effect("the destination stops hearing the source: it times out reading and tells the source why", () =>
    Effect.gen(function* () {
      const { source, destination } = yield* silent(10_000, 3_000)
      expect(destination).toMatchObject({
        origin: "channel",
        cause: { _tag: "TransportError", reason: { _tag: "TransportTimeout", operation: "read" } }
      })
      expect(source).toMatchObject({ origin: "destination", cause: { _tag: "PeerAborted", tag: "TransportTimeout" } })
    })
  )

  it.effect(
    "the source cannot get a write through: it times out writing, and the destination sees the channel go",
    () =>
      Effect.gen(function* () {
        const { source, destination } = yield* silent(3_000, 10_000)
        expect(source).toMatchObject({
          origin: "channel",
          cause: { _tag: "TransportError", reason: { _tag: "TransportTimeout", operation: "write" } }
        })
        expect(destination.origin).toBe("channel")
      })
  )
})
