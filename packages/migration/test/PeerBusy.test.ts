/*
 * A destination that is busy (a group step whose arcs outlast the peer timeout) is reported as
 * busy past the timeout, never as a silent peer or a channel failure. The destination says
 * when it begins a step that may be long (prepare: → RESUMING; validate: RESUMING → STOP and
 * its preparation to vote), and the source, timing out while that step is announced and not
 * finished, says so; both sides then recover as after any failure before COMMIT.
 */
import { describe, expect, it } from "@effect/vitest"
import { runOnVirtualTime } from "@lockstep/sim"
import { Effect } from "effect"
import { allIn, assertSafe, failureOf, type GroupDoc, makePair, migrate, successOf, threeGpus } from "./Harness.js"

/** The destination's group with one arc of every device taking `ms`. */
const slowArc = (arc: string, ms: number): GroupDoc => ({
  ...threeGpus,
  devices: threeGpus.devices.map((d) => ({ ...d, sim: { ...d.sim, arcLatenciesMs: { [arc]: ms } } }))
})

const peerTimeoutMs = 1_000
const timeouts = { peerTimeoutMs, arcTimeoutMs: 10_000 }

describe("a busy destination", () => {
  for (const [step, arc] of [
    ["validate", "RESUMING>STOP"],
    ["prepare", "STOP>RESUMING"]
  ] as const) {
    it.effect(`busy past the peer timeout in ${step} (${arc} takes 3 s) is reported as busy`, () =>
      Effect.gen(function* () {
        const pair = yield* runOnVirtualTime(makePair(threeGpus, slowArc(arc, 3_000)))
        const out = yield* runOnVirtualTime(migrate(pair, { source: timeouts, destination: timeouts }))
        const source = yield* failureOf(out.source)
        expect(source.cause).toMatchObject({ _tag: "PeerBusy", peer: "destination", step, timeoutMs: peerTimeoutMs })
        expect(source.origin).toBe("destination")
        expect(source.message).toContain(`busy`)
        expect(source.message).not.toMatch(/silent for|timed out|channel/)
        const destination = yield* failureOf(out.destination)
        expect(destination.cause).toMatchObject({ _tag: "PeerAborted", tag: "PeerBusy" })
        for (const error of [source, destination]) expect(error.recovered).toBe(true)
        expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
        expect(yield* allIn(pair.destination, "STOP")).toBe(true)
        yield* assertSafe(pair)
      })
    )
  }

  it.effect("the same step under the peer timeout migrates", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(threeGpus, slowArc("RESUMING>STOP", 500)))
      const out = yield* runOnVirtualTime(migrate(pair, { source: timeouts, destination: timeouts }))
      yield* successOf(out.source)
      expect(out.verified).toEqual([true, true, true])
      yield* assertSafe(pair)
    })
  )
})
