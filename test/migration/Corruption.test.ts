/*
 * Bit flips in transit, in either direction (fast-check): every frame carries checksums, so the
 * receiver fails with a typed stream error and both groups recover, or (a flip in the last frames,
 * after COMMIT) the migration stands. Never a half-resumed device, never both groups running.
 */
import { describe, expect, it } from "@effect/vitest"
import type { MigrationFailed } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import type { Transport } from "@lockstep/stream"
import { Cause, Effect, Exit, Option } from "effect"
import { TestClock } from "effect/testing"
import * as fc from "fast-check"
import { checkOutcome, flipBit, makePair, migrate, pairWith, threeGpus } from "../../packages/migration/test/Harness.js"

const formatErrors = new Set([
  "WrongMagic",
  "UnsupportedVersion",
  "ChecksumMismatch",
  "UnknownFrameType",
  "FrameTooLarge",
  "MalformedFrame",
  "FrameOutOfOrder",
  "UnknownDevice",
  "ChunkAfterDeviceEnd",
  "DuplicateDeviceEnd",
  "DeviceTotalMismatch",
  "DeviceNotEnded",
  "StreamTotalsMismatch",
  "Truncated",
  "DataAfterStreamEnd"
])

/** Whether an error is, or reports from the peer, a stream format error (a peer's is named by its reason). */
const isDecodeError = (e: MigrationFailed): boolean =>
  e.cause._tag === "FormatError" || (e.cause._tag === "PeerAborted" && formatErrors.has(e.cause.tag))

const options = { source: { bandwidthLimit: 4 * 1024 * 1024 } }
const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(Effect.provide(effect, TestClock.layer()))

describe("a corrupted stream", () => {
  it.effect(
    "a bit flipped anywhere in either direction is a typed decode error and a rollback, or a committed migration",
    () =>
      Effect.gen(function* () {
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
        const baseline = yield* runOnVirtualTime(makePair(threeGpus))
        yield* runOnVirtualTime(
          migrate(baseline, { ...options, transports: pairWith(counting("source"), counting("destination")) })
        )
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(
              fc.oneof(
                fc.integer({ min: 0, max: written.source - 1 }).map((n) => ["source", n] as const),
                fc.integer({ min: 0, max: written.destination - 1 }).map((n) => ["destination", n] as const)
              ),
              fc.integer({ min: 0, max: 7 }),
              ([side, offset], bit) =>
                run(
                  Effect.gen(function* () {
                    const pair = yield* runOnVirtualTime(makePair(threeGpus))
                    const flip = (t: Transport) => flipBit(t, offset, bit)
                    const transports = side === "source" ? pairWith(flip) : pairWith((t) => t, flip)
                    const out = yield* runOnVirtualTime(migrate(pair, { ...options, transports }), { limitMs: 120_000 })
                    yield* checkOutcome(pair, out)
                    const exits: ReadonlyArray<Exit.Exit<unknown, MigrationFailed>> = [out.source, out.destination]
                    const failures = exits.flatMap((exit) =>
                      Exit.isFailure(exit) ? Option.toArray(Cause.findErrorOption(exit.cause)) : []
                    )
                    if (Exit.isFailure(out.source)) expect(failures.some(isDecodeError)).toBe(true)
                  })
                )
            ),
            { numRuns: 60, seed: 7 }
          )
        )
      })
  )
})
