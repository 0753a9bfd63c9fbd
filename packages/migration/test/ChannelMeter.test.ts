/*
 * The channel meter on synthetic measurements: the expected figures follow from its stated
 * rule (delivery over the last three rounds, less one round trip each, bounded by half the
 * round; the least of the last five round trips), computed here by hand.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { assumedRate, ChannelMeter, Probes } from "../src/ChannelMeter.js"
import { measuredDowntime } from "../src/Estimate.js"

describe("ChannelMeter", () => {
  it("knows nothing before a measurement, and assumes the limit meanwhile", () => {
    const meter = new ChannelMeter()
    expect(meter.rate).toBeUndefined()
    expect(meter.roundTripMs).toBeUndefined()
    expect(meter.oneWayMs).toBe(0)
    expect(assumedRate(meter, 1e9)).toBe(1e9)
    expect(assumedRate(meter, Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY)
  })

  it("rates delivery over the last three rounds, each less one round trip", () => {
    const meter = new ChannelMeter()
    meter.recordRoundTrip(10)
    meter.recordDelivery(1_000_000, 1010) // 1 MB in 1000 ms of transfer
    expect(meter.rate).toBeCloseTo(1_000_000, 6)
    meter.recordDelivery(3_000_000, 1010) // 3 MB in 1000 ms
    expect(meter.rate).toBeCloseTo(4_000_000 / 2, 6)
    meter.recordDelivery(2_000_000, 2010)
    expect(meter.rate).toBeCloseTo(6_000_000 / 4, 6)
    // A fourth round pushes the first out: the channel's recent speed counts, not its history.
    meter.recordDelivery(8_000_000, 1010)
    expect(meter.rate).toBeCloseTo(13_000_000 / 4, 6)
    expect(assumedRate(meter, 1_000_000)).toBe(1_000_000)
  })

  it("takes at most half of a round for the round trip, and ignores empty or instant rounds", () => {
    const meter = new ChannelMeter()
    meter.recordRoundTrip(100)
    meter.recordDelivery(0, 500)
    meter.recordDelivery(1000, 0)
    expect(meter.rate).toBeUndefined()
    meter.recordDelivery(1000, 40) // the round trip exceeds the round: half of it (20 ms) is transfer
    expect(meter.rate).toBeCloseTo(1000 / 0.02, 6)
  })

  it("keeps the least of the last five round trips, so a stale sample ages out", () => {
    const meter = new ChannelMeter()
    meter.recordRoundTrip(95) // the handshake, with the destination's setup in it
    meter.recordRoundTrip(2)
    expect(meter.roundTripMs).toBe(2)
    expect(meter.oneWayMs).toBe(1)
    meter.recordRoundTrip(9) // one stretched by a busy event loop does not count
    expect(meter.roundTripMs).toBe(2)
    // The path gets slower: once the fast sample is five samples old, the slower one stands.
    for (const ms of [30, 31, 32, 33]) meter.recordRoundTrip(ms)
    expect(meter.roundTripMs).toBe(9)
    meter.recordRoundTrip(34)
    expect(meter.roundTripMs).toBe(30)
    meter.recordRoundTrip(Number.NaN)
    meter.recordRoundTrip(-1)
    expect(meter.roundTripMs).toBe(30)
  })
})

describe("Probes", () => {
  it.effect("an opening probe's answer is a round trip; a closing one's only says the round was read", () =>
    Effect.gen(function* () {
      const meter = new ChannelMeter()
      const probes = new Probes(meter)
      const opening = yield* probes.open(true, 100)
      const closing = yield* probes.open(false, 150)
      expect(closing.id).not.toBe(opening.id)
      expect(yield* probes.answer(closing.id, 400)).toBe(true)
      expect(meter.roundTripMs).toBeUndefined()
      expect(yield* Deferred.isDone(closing.answered)).toBe(true)
      expect(yield* Deferred.isDone(opening.answered)).toBe(false)
      expect(yield* probes.answer(opening.id, 103)).toBe(true)
      expect(meter.roundTripMs).toBe(3)
      // An answer to nothing pending (twice, or never sent) is the peer's mistake.
      expect(yield* probes.answer(opening.id, 104)).toBe(false)
      expect(yield* probes.answer(99, 104)).toBe(false)
    })
  )
})

describe("measuredDowntime", () => {
  it("counts the switchover up to the decision, COMMIT's way across, and the destination's resume", () => {
    // Switchover at 100, decision at 160; the confirmation comes 30 ms later, 20 of them resuming:
    // 10 ms of crossings, 5 each way.
    expect(measuredDowntime({ switchoverAt: 100, decidedAt: 160, confirmation: { at: 190, resumeMs: 20 } })).toBe(
      60 + 5 + 20
    )
    // A resume reported longer than the wait (clocks apart) takes no crossing below zero.
    expect(measuredDowntime({ switchoverAt: 0, decidedAt: 10, confirmation: { at: 15, resumeMs: 8 } })).toBe(18)
  })
})
