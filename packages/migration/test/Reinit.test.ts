import { describe, expect, it } from "@effect/vitest"
import { Journal, type MigrationEvent, type SourceOptions } from "@lockstep/migration"
import { runOnVirtualTime, type SimDevice } from "@lockstep/sim"
import { Effect } from "effect"
import {
  allIn,
  assertNeverBothRun,
  assertSafe,
  failureOf,
  type GroupDoc,
  makePair,
  migrate,
  type Pair,
  successOf,
  threeGpus,
  wrapDevices
} from "./Harness.js"

/*
 * Pre-copy re-initialisation (kernel series of Feb/Mar 2026, VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2,
 * VFIO_PRECOPY_INFO_REINIT; QEMU 11.1). The outcomes the series and QEMU define:
 * - a REINIT during pre-copy makes the device's initial data due again, and the switchover waits
 *   for the destination's acknowledgement of the new initial data (switchover-ack re-gated);
 * - at the decision instant every device's sizes are read again: a REINIT there, or an estimate
 *   that no longer fits, withdraws the switchover and pre-copy goes on;
 * - a REINIT after the switchover decision fails the migration (QEMU fails a migration whose
 *   switchover-ack is requested after the decision): the source group rolls back to RUNNING.
 * A device that did not take the v2 opt-in never reports REINIT.
 */

const fourMiB = 4 * 1024 * 1024

/** `threeGpus` with `gpu1`'s sim parameters extended by `sim`. */
const gpu1With = (sim: Record<string, unknown>): GroupDoc => ({
  ...threeGpus,
  devices: threeGpus.devices.map((d) => (d.id === "gpu1" ? { ...d, sim: { ...d.sim, ...sim } } : d))
})

const simDevice = (pair: Pair, id: string): SimDevice => {
  const device = pair.source.devices.get(id)
  if (device === undefined) throw new Error(`no device ${id}`)
  return device
}

/** Source options that record the source's events and call `hook` on each, synchronously. */
const watched = (events: Array<MigrationEvent>, hook: (event: MigrationEvent) => void = () => {}): SourceOptions => ({
  bandwidthLimit: fourMiB,
  onEvent: (event) => {
    events.push(event)
    hook(event)
  }
})

const indexOf = (events: ReadonlyArray<MigrationEvent>, p: (e: MigrationEvent) => boolean) => events.findIndex(p)
const allIndices = (events: ReadonlyArray<MigrationEvent>, p: (e: MigrationEvent) => boolean) =>
  events.flatMap((e, i) => (p(e) ? [i] : []))
const of =
  (tag: MigrationEvent["_tag"], device?: string) =>
  (e: MigrationEvent): boolean =>
    e._tag === tag && (device === undefined || ("device" in e && e.device === device))

/** The migration moved the group: verified, source stopped, destination running, never unsafe. */
const expectMigrated = (pair: Pair, out: { readonly verified: ReadonlyArray<boolean> }) =>
  Effect.gen(function* () {
    expect(out.verified).toEqual([true, true, true])
    expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
    expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
    yield* assertNeverBothRun(pair)
    yield* assertSafe(pair)
  })

describe("pre-copy re-initialisation", () => {
  it.effect("before the decision: the new initial data is sent again and the switchover waits for its ack", () =>
    Effect.gen(function* () {
      // Round 1 asks twice (before its pump, and after it, when the initial data is all sent and
      // the marker goes); query 3 is round 2's first: a REINIT after the first marker.
      const pair = yield* runOnVirtualTime(makePair(gpu1With({ precopyInfoV2: true, reinitAtQuery: 3 })))
      const events: Array<MigrationEvent> = []
      const out = yield* runOnVirtualTime(migrate(pair, { source: watched(events) }))
      const summary = yield* successOf(out.source)
      yield* successOf(out.destination)
      yield* expectMigrated(pair, out)

      const reinit = indexOf(events, of("PrecopyReinitialised", "gpu1"))
      expect(events[reinit]).toMatchObject({ _tag: "PrecopyReinitialised", device: "gpu1", round: 2 })
      const sent = allIndices(events, of("InitialDataSent", "gpu1"))
      const acked = allIndices(events, of("InitialDataAcknowledged", "gpu1"))
      const decided = indexOf(events, of("SwitchoverDecided"))
      expect(sent).toHaveLength(2)
      expect(sent[0]).toBeLessThan(reinit)
      expect(sent[1]).toBeGreaterThan(reinit)
      // The ack that gates the switchover is the one of the new initial data.
      expect(acked.filter((i) => i > (sent[1] ?? Infinity) && i < decided)).toHaveLength(1)
      expect(summary.switchover).toBe("converged")
      // The whole 64 KiB pre-copy portion again: 16 page records of a 12-byte header and 4 KiB.
      expect(summary.reinitialised).toEqual([{ device: "gpu1", round: 2, initialBytes: 16 * (12 + 4096) }])
      expect(summary.switchoversWithdrawn).toBe(0)
      // The other devices sent their initial data once.
      for (const id of ["gpu0", "gpu2"]) expect(allIndices(events, of("InitialDataSent", id))).toHaveLength(1)
    })
  )

  it.effect("at the decision instant: the sizes read again show a REINIT, the switchover is withdrawn, then made", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(gpu1With({ precopyInfoV2: true })))
      const gpu1 = simDevice(pair, "gpu1")
      const events: Array<MigrationEvent> = []
      let due = 0
      const hook = (e: MigrationEvent) => {
        // The device re-initialises as the decision falls due: the decision's own read sees it.
        if (e._tag === "SwitchoverDue" && due++ === 0) expect(Effect.runSync(gpu1.reinitialise)).toBe(true)
      }
      const out = yield* runOnVirtualTime(migrate(pair, { source: watched(events, hook) }))
      const summary = yield* successOf(out.source)
      yield* expectMigrated(pair, out)
      expect(summary.switchoversWithdrawn).toBe(1)
      expect(summary.reinitialised.map((r) => r.device)).toEqual(["gpu1"])

      const firstDue = indexOf(events, of("SwitchoverDue"))
      const reinit = indexOf(events, of("PrecopyReinitialised", "gpu1"))
      const withdrawn = indexOf(events, of("SwitchoverWithdrawn"))
      const decided = indexOf(events, of("SwitchoverDecided"))
      expect(firstDue).toBeGreaterThanOrEqual(0)
      expect(firstDue < reinit && reinit < withdrawn && withdrawn < decided).toBe(true)
      expect(events[withdrawn]).toMatchObject({ reinitialised: ["gpu1"] })
      // Pre-copy went on: the new initial data was sent and acknowledged before the switchover.
      const resent = allIndices(events, of("InitialDataSent", "gpu1")).filter((i) => i > withdrawn)
      const reacked = allIndices(events, of("InitialDataAcknowledged", "gpu1")).filter((i) => i > withdrawn)
      expect(resent).toHaveLength(1)
      expect(reacked.filter((i) => i < decided)).toHaveLength(1)
      // The decision that stood came from a later round, after a second due.
      expect(allIndices(events, of("SwitchoverDue")).filter((i) => i > withdrawn && i < decided)).toHaveLength(1)
    })
  )

  it.effect("after the decision: the migration fails with ReinitAfterSwitchover and the group rolls back", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(gpu1With({ precopyInfoV2: true })))
      const gpu1 = simDevice(pair, "gpu1")
      const events: Array<MigrationEvent> = []
      const hook = (e: MigrationEvent) => {
        if (e._tag === "SwitchoverDecided") expect(Effect.runSync(gpu1.reinitialise)).toBe(true)
      }
      const out = yield* runOnVirtualTime(migrate(pair, { source: watched(events, hook) }))
      const failed = yield* failureOf(out.source)
      expect(failed.phase).toBe("switchover")
      expect(failed.cause).toMatchObject({ _tag: "ReinitAfterSwitchover", device: "gpu1" })
      expect(failed.message).toContain("gpu1")
      // Not re-gated: no re-initialisation is taken in, the migration fails at once.
      expect(events.filter(of("PrecopyReinitialised"))).toEqual([])
      expect(events.filter(of("SwitchoverWithdrawn"))).toEqual([])
      yield* failureOf(out.destination)
      // Rolled back: the source runs again, the destination's devices were reset and parked.
      expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
      expect(yield* allIn(pair.destination, "STOP")).toBe(true)
      expect((yield* Journal.ownership(pair.journal))._tag).toBe("SourceOwns")
      yield* assertNeverBothRun(pair)
      yield* assertSafe(pair)
    })
  )

  it.effect("a device without the v2 opt-in never reports REINIT: one initial-data marker, no withdrawal", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(gpu1With({ reinitAtQuery: 3 })))
      const gpu1 = simDevice(pair, "gpu1")
      const events: Array<MigrationEvent> = []
      const hook = (e: MigrationEvent) => {
        if (e._tag === "SwitchoverDue") expect(Effect.runSync(gpu1.reinitialise)).toBe(false)
      }
      const out = yield* runOnVirtualTime(migrate(pair, { source: watched(events, hook) }))
      yield* successOf(out.source)
      yield* expectMigrated(pair, out)
      expect(events.filter(of("PrecopyReinitialised"))).toEqual([])
      expect(events.filter(of("SwitchoverWithdrawn"))).toEqual([])
      expect(allIndices(events, of("InitialDataSent", "gpu1"))).toHaveLength(1)
    })
  )

  it.effect("the estimate is made again from sizes read at the decision: one that no longer fits withdraws it", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus))
      // gpu2's stop-copy length jumps by 64 MiB exactly while the switchover is due (a device whose
      // state grew at that instant), and is back to its own by the next round.
      let jumped = false
      let due = 0
      const runtime = wrapDevices(pair.source, (d) =>
        d.id === "gpu2"
          ? { ...d, stopCopyLength: Effect.map(d.stopCopyLength, (n) => (jumped ? n + 64 * 1024 * 1024 : n)) }
          : d
      )
      const events: Array<MigrationEvent> = []
      const hook = (e: MigrationEvent) => {
        if (e._tag === "SwitchoverDue") jumped = due++ === 0
        if (e._tag === "SwitchoverWithdrawn") jumped = false
      }
      const limit = 300
      const out = yield* runOnVirtualTime(
        migrate(pair, { source: { ...watched(events, hook), downtimeLimitMs: limit }, runtimes: { source: runtime } })
      )
      yield* successOf(out.source)
      yield* expectMigrated(pair, out)
      const dues = allIndices(events, of("SwitchoverDue"))
      const withdrawn = events.filter(of("SwitchoverWithdrawn"))
      expect(dues).toHaveLength(2)
      expect(withdrawn).toHaveLength(1)
      // 64 MiB at the 4 MiB/s limit is 16 s of transfer alone: over the limit.
      expect(withdrawn[0]).toMatchObject({ reinitialised: [] })
      const w = withdrawn[0]
      expect(w?._tag === "SwitchoverWithdrawn" && w.estimateMs).toBeGreaterThan(16_000)
      const firstDue = events[dues[0] ?? -1]
      expect(firstDue?._tag === "SwitchoverDue" && firstDue.estimateMs).toBeLessThanOrEqual(limit)
    })
  )
})
