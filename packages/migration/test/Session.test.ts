import { describe, expect, it } from "@effect/vitest"
import { DeviceError, SessionFailed } from "@lockstep/device"
import { feed, Journal, type MigrationEvent, migrateDestination, migrateSource, Phases } from "@lockstep/migration"
import { runOnVirtualTime } from "@lockstep/sim"
import { MemoryTransport, type Transport } from "@lockstep/stream"
import { Effect, Exit, Stream } from "effect"
import {
  allIn,
  assertSafe,
  failureOf,
  makePair,
  migrate,
  pairWith,
  statesOf,
  successOf,
  threeGpus,
  withFaults,
  wrapDevices
} from "./Harness.js"

const fourMiB = 4 * 1024 * 1024
const stateSize = 64 * 1024

/** The tag of each event of a side, in order. */
const tagsOf = (events: ReadonlyArray<MigrationEvent>) => events.map((e) => e._tag)

describe("migration sessions on virtual time", () => {
  it.effect("migrates three P2P GPUs: re-sends dirtied pages, converges, verifies, and leaves the source stopped", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const out = yield* runOnVirtualTime(migrate(pair, { source: { bandwidthLimit: fourMiB } }))
      const source = yield* successOf(out.source)
      const destination = yield* successOf(out.destination)
      expect(out.verified).toEqual([true, true, true])
      expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
      expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
      yield* assertSafe(pair)

      expect(source.switchover).toBe("converged")
      expect(source.rounds).toBeGreaterThanOrEqual(2)
      expect(source.confirmed).toBe(true)
      const totals = Object.values(source.devices)
      expect(source.bytes).toBe(totals.reduce((n, d) => n + d.precopyBytes + d.stopCopyBytes, 0))
      expect(destination.bytes).toBe(source.bytes)
      expect(destination.devices).toEqual(source.devices)
      // P2P writes and the GPUs' own dirtying made pages go again: more than one state's worth per device.
      expect(totals.every((d) => d.precopyBytes + d.stopCopyBytes > stateSize)).toBe(true)
      expect(source.estimate?.totalMs).toBeLessThanOrEqual(300)
      expect(source.downtimeMs).toBeGreaterThanOrEqual(source.switchoverCriticalPathMs)
      expect(Object.keys(source.phases)).toEqual(Phases)

      const sourceEvents = out.events.filter((e) => !("side" in e) || e.side === "source")
      const tags = tagsOf(sourceEvents)
      expect(tags[0]).toBe("PhaseStarted")
      expect(tags.at(-1)).toBe("Completed")
      const decided = tags.indexOf("SwitchoverDecided")
      const acked = sourceEvents.flatMap((e, i) => (e._tag === "InitialDataAcknowledged" ? [i] : []))
      expect(acked).toHaveLength(3)
      expect(acked.every((i) => i < decided)).toBe(true)

      expect(yield* Journal.ownership(pair.journal)).toEqual({
        _tag: "DestinationOwns",
        migration: source.migration,
        confirmed: true
      })
    })
  )

  it.effect("without pre-copy, everything moves after the switchover", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const out = yield* runOnVirtualTime(migrate(pair, { source: { precopy: false, bandwidthLimit: fourMiB } }))
      const source = yield* successOf(out.source)
      expect(source.rounds).toBe(0)
      expect(source.switchover).toBe("no-precopy")
      expect(Object.values(source.devices).every((d) => d.precopyBytes === 0 && d.stopCopyBytes > 0)).toBe(true)
      expect(out.verified).toEqual([true, true, true])
      yield* assertSafe(pair)
    })
  )

  it.effect("at a limit, the abort policy fails typed and rolls back; the switch policy switches anyway", () =>
    Effect.gen(function* () {
      const strict = { downtimeLimitMs: 0.001, maxRounds: 3, bandwidthLimit: fourMiB }
      const aborting = yield* runOnVirtualTime(makePair(threeGpus))
      const aborted = yield* runOnVirtualTime(migrate(aborting, { source: { ...strict, onLimit: "abort" } }))
      const error = yield* failureOf(aborted.source)
      expect(error).toMatchObject({ phase: "precopy", origin: "source", cause: { _tag: "PrecopyLimitReached" } })
      expect(yield* failureOf(aborted.destination)).toMatchObject({
        cause: { _tag: "PeerAborted", tag: "PrecopyLimitReached" }
      })
      expect(yield* allIn(aborting.source, "RUNNING")).toBe(true)
      expect(yield* allIn(aborting.destination, "STOP")).toBe(true)
      yield* assertSafe(aborting)

      const switching = yield* runOnVirtualTime(makePair(threeGpus))
      const switched = yield* runOnVirtualTime(migrate(switching, { source: { ...strict, onLimit: "switch" } }))
      const summary = yield* successOf(switched.source)
      expect(["rounds", "stalled"]).toContain(summary.switchover)
      expect(switched.verified).toEqual([true, true, true])
      yield* assertSafe(switching)
    })
  )

  it.effect("a slow destination slows the source's reads: what is read and not yet written stays bounded", () =>
    Effect.gen(function* () {
      const big = {
        ...threeGpus,
        devices: threeGpus.devices.map((d) => ({ ...d, sim: { ...d.sim, stateSize: 1024 * 1024 } }))
      }
      const pair = yield* runOnVirtualTime(makePair(big))
      let read = 0
      let written = 0
      let outstanding = 0
      const source = wrapDevices(pair.source, (d) => ({
        ...d,
        read: (max) =>
          Effect.tap(d.read(max), (r) =>
            Effect.sync(() => {
              if (r._tag === "Chunk") read += r.data.length
              outstanding = Math.max(outstanding, read - written)
            })
          )
      }))
      const destination = wrapDevices(pair.destination, (d) => ({
        ...d,
        write: (data) =>
          Effect.sleep(2).pipe(
            Effect.andThen(d.write(data)),
            Effect.tap(() =>
              Effect.sync(() => {
                written += data.length
              })
            )
          )
      }))
      const chunkBytes = 16 * 1024
      const out = yield* runOnVirtualTime(
        migrate(pair, {
          runtimes: { source, destination },
          source: { chunkBytes, precopy: false },
          destination: { queueDepth: 2 }
        })
      )
      yield* successOf(out.source)
      expect(read).toBeGreaterThan(3 * 1024 * 1024)
      // The channel's 64 KiB, two queued chunks and one being written per device, one read in flight per device.
      const bound = 64 * 1024 + 3 * (2 + 1 + 1) * chunkBytes
      expect(outstanding).toBeLessThanOrEqual(bound)
      yield* assertSafe(pair)
    })
  )

  it.effect("a destination device's failure reaches the source typed: a PeerAborted carrying that DeviceError", () =>
    Effect.gen(function* () {
      // The second write into gpu1 fails with ENOSPC: a SessionFailed of the write, in RESUMING.
      const faulty = withFaults(threeGpus, { gpu1: [{ _tag: "FailWrite", nth: 2, code: "ENOSPC" }] })
      const pair = yield* runOnVirtualTime(makePair(threeGpus, faulty))
      const out = yield* runOnVirtualTime(migrate(pair, { source: { bandwidthLimit: fourMiB } }))
      const expected = { device: "gpu1", operation: "write", code: "ENOSPC", state: "RESUMING" }
      const destination = yield* failureOf(out.destination)
      expect(destination.cause).toBeInstanceOf(DeviceError)
      expect(destination.cause).toMatchObject({ reason: expected })
      const source = yield* failureOf(out.source)
      expect(source).toMatchObject({ origin: "destination", cause: { _tag: "PeerAborted", peer: "destination" } })
      const told = source.cause._tag === "PeerAborted" ? source.cause.cause : undefined
      expect(told).toBeInstanceOf(DeviceError)
      const reason = told instanceof DeviceError ? told.reason : undefined
      expect(reason).toBeInstanceOf(SessionFailed)
      expect(reason).toMatchObject(expected)
      expect(told).toEqual(destination.cause)
      // The sentence a person reads names the cause as before device errors had one class.
      expect(source.cause.message).toBe(
        `the destination aborted in ${destination.phase} (SessionFailed): ${destination.cause.message}`
      )
      expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      yield* assertSafe(pair)
    })
  )

  it.effect("a backend without pre-copy progress (vfio-user's EOPNOTSUPP) still pre-copies and migrates", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const source = wrapDevices(pair.source, (d) => ({
        ...d,
        precopyInfo: Effect.fail(
          DeviceError.sessionFailed({
            device: d.id,
            operation: "precopyInfo",
            code: "EOPNOTSUPP",
            reason: "no such message",
            state: "PRE_COPY"
          })
        )
      }))
      const out = yield* runOnVirtualTime(migrate(pair, { runtimes: { source }, source: { bandwidthLimit: fourMiB } }))
      const summary = yield* successOf(out.source)
      expect(Object.values(summary.devices).every((d) => d.precopyBytes >= stateSize)).toBe(true)
      expect(out.verified).toEqual([true, true, true])
      yield* assertSafe(pair)
    })
  )

  it.effect("progress is also an Effect Stream of events", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const events = yield* feed
      yield* runOnVirtualTime(migrate(pair, { source: { onEvent: events.onEvent, bandwidthLimit: fourMiB } }))
      yield* events.close
      const seen = yield* Stream.runCollect(events.events)
      expect(seen.filter((e) => e._tag === "RoundDone").length).toBeGreaterThanOrEqual(2)
      expect(seen.at(-1)?._tag).toBe("Completed")
      yield* assertSafe(pair)
    })
  )

  it.effect("a destination that never answers fails the handshake after the peer timeout, touching nothing", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const [a] = yield* MemoryTransport.pair()
      const exit = yield* runOnVirtualTime(
        Effect.exit(migrateSource(pair.source, a, { journal: pair.journal, peerTimeoutMs: 500 }))
      )
      expect(yield* failureOf(exit)).toMatchObject({
        phase: "handshake",
        origin: "channel",
        cause: { _tag: "PeerSilent" },
        recovered: true
      })
      expect(pair.source.fabric.trace().filter((e) => e._tag === "ArcStarted")).toEqual([])
      expect(yield* pair.journal.entries).toEqual([])
      yield* assertSafe(pair)
    })
  )

  /** The source's channel, closed instead of carrying the COMMIT decision. */
  const loseTheDecision = (t: Transport): Transport => ({
    ...t,
    write: (chunks) =>
      chunks.some((c) => new TextDecoder().decode(c).includes('"Committed"'))
        ? Effect.andThen(t.close, t.write(chunks))
        : t.write(chunks)
  })

  it.effect("lost after its vote without the source's journal, the destination waits in STOP: CommitInDoubt", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const out = yield* runOnVirtualTime(
        migrate(pair, {
          transports: pairWith(loseTheDecision),
          source: { bandwidthLimit: fourMiB },
          destination: { decisionJournal: undefined }
        })
      )
      const source = yield* successOf(out.source)
      expect(source.confirmed).toBe(false)
      expect(yield* failureOf(out.destination)).toMatchObject({
        phase: "commit",
        cause: { _tag: "CommitInDoubt" },
        recovered: true
      })
      // Validated and waiting: neither running nor reset, until the journal is read.
      expect(yield* statesOf(pair.destination)).toEqual({ gpu0: "STOP", gpu1: "STOP", gpu2: "STOP" })
      expect(pair.destination.fabric.trace().filter((e) => e._tag === "Reset")).toEqual([])
      expect((yield* Journal.ownership(pair.journal))._tag).toBe("DestinationOwns")
      yield* assertSafe(pair)
    })
  )

  it.effect("lost after its vote with the source's journal, the destination reads COMMIT there and resumes", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const out = yield* runOnVirtualTime(
        migrate(pair, { transports: pairWith(loseTheDecision), source: { bandwidthLimit: fourMiB } })
      )
      expect((yield* successOf(out.source)).confirmed).toBe(false)
      expect((yield* successOf(out.destination)).decidedFromJournal).toBe(true)
      expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
      expect(out.verified).toEqual([true, true, true])
      yield* assertSafe(pair)
    })
  )

  it.effect("interrupting the source mid-pre-copy rolls its group back and the destination resets", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const run = migrate(pair, { source: { bandwidthLimit: 1024 * 1024 } })
      const exit = yield* runOnVirtualTime(Effect.exit(Effect.timeout(run, 40)), { limitMs: 60_000 })
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      yield* assertSafe(pair)
    })
  )

  /** Runs both sides with the source's COMMIT delayed 1 s, and the destination cut short at 500 ms. */
  const interruptedInDoubt = (withJournal: boolean) =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      const slow: Journal.Journal = {
        ...pair.journal,
        decide: (m, d, r) =>
          d === "commit"
            ? Effect.andThen(Effect.sleep(1_000), pair.journal.decide(m, d, r))
            : pair.journal.decide(m, d, r)
      }
      const [a, b] = yield* MemoryTransport.pair()
      const [source, destination] = yield* runOnVirtualTime(
        Effect.all(
          [
            Effect.exit(
              migrateSource(pair.source, a, {
                journal: slow,
                compatibility: pair.compatibility,
                bandwidthLimit: fourMiB
              })
            ),
            Effect.exit(
              Effect.timeout(
                migrateDestination(pair.destination, b, {
                  compatibility: pair.compatibility,
                  ...(withJournal ? { decisionJournal: pair.journal } : {})
                }),
                500
              )
            )
          ],
          { concurrency: 2 }
        )
      )
      return { pair, source, destination }
    })

  it.effect(
    "a destination interrupted while in doubt fences the undecided migration and resets; the source rolls back",
    () =>
      Effect.gen(function* () {
        const { pair, source, destination } = yield* interruptedInDoubt(true)
        expect(Exit.isFailure(destination)).toBe(true)
        const error = yield* failureOf(source)
        expect(error.phase).toBe("commit")
        // Told by the destination, or refused by the journal it fenced: either way, not committed.
        expect(["PeerAborted", "DecisionFenced"]).toContain(error.cause._tag)
        expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
        expect(yield* allIn(pair.destination, "STOP")).toBe(true)
        expect((yield* Journal.ownership(pair.journal))._tag).toBe("SourceOwns")
        yield* assertSafe(pair)
      })
  )

  it.effect("interrupted while in doubt with no journal to read, the destination neither runs nor resets", () =>
    Effect.gen(function* () {
      const { pair, source } = yield* interruptedInDoubt(false)
      expect((yield* successOf(source)).confirmed).toBe(false)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      expect(pair.destination.fabric.trace().filter((e) => e._tag === "Reset")).toEqual([])
      expect((yield* Journal.ownership(pair.journal))._tag).toBe("DestinationOwns")
      yield* assertSafe(pair)
    })
  )
})
