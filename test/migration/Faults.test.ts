/*
 * A fault at every step of a migration, on each side: each run must end with one typed error per
 * side naming the phase, the source group back in RUNNING, the destination reset and parked in
 * STOP, no destination device RUNNING unless the journal says COMMIT, and no P2P violation but
 * the documented ERROR exposure.
 */
import { describe, expect, it } from "@effect/vitest"
import { transition } from "@lockstep/coordinator"
import { Journal, JournalFailed, type Phase, type SourceOptions } from "@lockstep/migration"
import { type Fault, runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import {
  allIn,
  assertNeverBothRun,
  assertSafe,
  failureOf,
  makePair,
  migrate,
  type Pair,
  statesOf,
  threeGpus,
  withFaults
} from "../../packages/migration/test/Harness.js"

interface Case {
  readonly name: string
  readonly source?: Readonly<Record<string, ReadonlyArray<Fault>>>
  readonly destination?: Readonly<Record<string, ReadonlyArray<Fault>>>
  readonly options?: SourceOptions
  readonly journal?: (journal: Journal.Journal) => Journal.Journal
  readonly phase: Phase
  readonly origin: "source" | "destination"
  /** The `_tag` of the cause on the side where it began. */
  readonly cause: string
  /** The `_tag` of that cause's reason, for an error with a reason union (`DeviceError`). */
  readonly reason?: string
  /**
   * The peer's abort carries the cause in words only (tag and sentence), not typed: the
   * destination's offer to give a committed group back, which is not yet a failure.
   */
  readonly inWords?: boolean
  /** A device fails into ERROR: the documented exposure may show in the fabric. */
  readonly error?: boolean
}

const failingCommit = (journal: Journal.Journal): Journal.Journal => ({
  ...journal,
  decide: (migration, decision, reason) =>
    decision === "commit"
      ? Effect.fail(new JournalFailed({ operation: "decide", location: "memory", reason: "disk full" }))
      : journal.decide(migration, decision, reason)
})

/** A journal in which the destination's ABORT always lands just before the source's COMMIT. */
const fencedCommit = (journal: Journal.Journal): Journal.Journal => ({
  ...journal,
  decide: (migration, decision, reason) =>
    decision === "commit"
      ? Effect.andThen(
          journal.decide(migration, "abort", "fenced by the destination"),
          journal.decide(migration, "commit")
        )
      : journal.decide(migration, decision, reason)
})

const cases: ReadonlyArray<Case> = [
  {
    name: "source: beginPrecopy arc fails",
    source: { gpu1: [{ _tag: "FailArc", to: "PRE_COPY" }] },
    phase: "prepare",
    origin: "source",
    cause: "TransitionFailed"
  },
  {
    name: "destination: prepareResume arc fails",
    destination: { gpu1: [{ _tag: "FailArc", to: "RESUMING" }] },
    phase: "prepare",
    origin: "destination",
    cause: "TransitionFailed"
  },
  {
    name: "source: a pre-copy read fails",
    source: { gpu0: [{ _tag: "FailRead", nth: 2 }] },
    phase: "precopy",
    origin: "source",
    cause: "DeviceError",
    reason: "SessionFailed"
  },
  {
    name: "source: a switchover arc fails",
    source: { gpu2: [{ _tag: "FailArc", to: "STOP_COPY" }] },
    phase: "switchover",
    origin: "source",
    cause: "TransitionFailed"
  },
  {
    name: "source: a switchover arc fails into ERROR",
    source: { gpu2: [{ _tag: "FailArc", from: "PRE_COPY", to: "PRE_COPY_P2P", leaveIn: "error" }] },
    phase: "switchover",
    origin: "source",
    cause: "TransitionFailed",
    error: true
  },
  {
    name: "source: a switchover arc hangs past the arc timeout",
    source: { gpu1: [{ _tag: "HangArc", to: "STOP_COPY" }] },
    phase: "switchover",
    origin: "source",
    cause: "TransitionFailed"
  },
  {
    name: "source: a drain read fails",
    source: { gpu0: [{ _tag: "FailRead", nth: 2 }] },
    options: { precopy: false },
    phase: "drain",
    origin: "source",
    cause: "DeviceError",
    reason: "SessionFailed"
  },
  {
    name: "destination: a write fails",
    destination: { gpu1: [{ _tag: "FailWrite", nth: 2 }] },
    phase: "precopy",
    origin: "destination",
    cause: "DeviceError",
    reason: "SessionFailed"
  },
  {
    name: "destination: validation rejects corrupted data",
    source: { gpu0: [{ _tag: "CorruptData", atByte: 100 }] },
    phase: "validate",
    origin: "destination",
    cause: "TransitionFailed"
  },
  {
    name: "destination: validation rejects truncated data",
    source: { gpu2: [{ _tag: "TruncateData" }] },
    options: { precopy: false },
    phase: "validate",
    origin: "destination",
    cause: "TransitionFailed"
  },
  {
    name: "source: the journal cannot record COMMIT",
    journal: failingCommit,
    phase: "commit",
    origin: "source",
    cause: "JournalFailed"
  },
  {
    name: "source: the destination fenced the decision with ABORT first",
    journal: fencedCommit,
    phase: "commit",
    origin: "source",
    cause: "DecisionFenced"
  },
  {
    name: "destination: a resume arc fails on every attempt after COMMIT, and it gives the group back",
    destination: { gpu2: [{ _tag: "FailArc", from: "STOP", to: "RUNNING_P2P", times: "always" }] },
    phase: "resume",
    origin: "destination",
    cause: "ResumeIncomplete",
    inWords: true
  },
  {
    name: "destination: the last resume arc fails into ERROR on every attempt after COMMIT",
    destination: { gpu0: [{ _tag: "FailArc", from: "RUNNING_P2P", to: "RUNNING", leaveIn: "error", times: "always" }] },
    phase: "resume",
    origin: "destination",
    cause: "ResumeIncomplete",
    inWords: true,
    error: true
  }
]

/** No destination device ran unless the journal says COMMIT, at the end and at every arc it took. */
const noUnauthorisedRun = (pair: Pair) =>
  Effect.gen(function* () {
    const owner = yield* Journal.ownership(pair.journal)
    const states = yield* statesOf(pair.destination)
    if (owner._tag !== "DestinationOwns") expect(Object.values(states).includes("RUNNING")).toBe(false)
  })

describe("a fault at every step, on each side", () => {
  for (const c of cases) {
    it.effect(c.name, () =>
      Effect.gen(function* () {
        const pair = yield* runOnVirtualTime(
          makePair(withFaults(threeGpus, c.source ?? {}), withFaults(threeGpus, c.destination ?? {}))
        )
        const journal = (c.journal ?? ((j) => j))(pair.journal)
        const out = yield* runOnVirtualTime(
          migrate(
            { ...pair, journal },
            {
              source: { bandwidthLimit: 4 * 1024 * 1024, ...c.options },
              destination: { decisionJournal: pair.journal }
            }
          ),
          { limitMs: 120_000 }
        )
        const source = yield* failureOf(out.source)
        const destination = yield* failureOf(out.destination)
        for (const error of [source, destination]) {
          expect(error._tag).toBe("MigrationFailed")
          expect(error.phase).toBe(c.phase)
          expect(error.origin).toBe(c.origin)
          expect(error.recovered).toBe(true)
        }
        const here = c.origin === "source" ? source : destination
        const there = c.origin === "source" ? destination : source
        expect(here.cause._tag).toBe(c.cause)
        if (c.reason !== undefined) expect(here.cause).toMatchObject({ reason: { _tag: c.reason } })
        expect(there.cause).toMatchObject({ _tag: "PeerAborted", peer: c.origin, phase: c.phase })
        // The peer's own typed error comes back: the same class with the same fields.
        const told = there.cause._tag === "PeerAborted" ? there.cause.cause : undefined
        if (c.inWords === true) expect(told).toMatchObject({ _tag: "UnknownPeerCause", tag: c.cause })
        else {
          expect(told).toBeInstanceOf(here.cause.constructor)
          expect(told).toEqual(here.cause)
          expect(told?.message).toBe(here.cause.message)
        }

        expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
        expect(yield* allIn(pair.destination, "STOP")).toBe(true)
        expect((yield* Journal.ownership(pair.journal))._tag).toBe("SourceOwns")
        yield* noUnauthorisedRun(pair)
        yield* assertNeverBothRun(pair)
        yield* assertSafe(pair)
        const exposures = [...pair.source.fabric.violations(), ...pair.destination.fabric.violations()]
        if (c.error !== true) expect(exposures).toEqual([])
      })
    )
  }
})

describe("the both-groups-run check", () => {
  it.effect("catches a destination resumed while the source runs", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      yield* runOnVirtualTime(transition(pair.destination, "RUNNING"))
      const caught = yield* Effect.exit(assertNeverBothRun(pair))
      expect(caught._tag).toBe("Failure")
      yield* assertSafe(pair)
    })
  )
})
