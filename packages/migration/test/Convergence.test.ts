/*
 * The switchover rule on synthetic measurements. Expected figures come from the rule's own
 * statement (dirtied = remaining after − remaining before + sent; stalled = not 10% below the
 * least before; the order converged, stalled, rounds, time), computed by hand or, for the
 * bound on rounds, from a model of pre-copy that the rule does not know.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { decideSwitchover, PrecopyProgress, type RoundOutcome } from "../src/Convergence.js"

const outcome = (over: Partial<RoundOutcome>): RoundOutcome => ({
  round: 2,
  sentBytes: 1000,
  estimateMs: 500,
  downtimeLimitMs: 100,
  acknowledged: true,
  stall: undefined,
  maxRounds: 30,
  elapsedMs: 1000,
  maxPrecopyMs: 60_000,
  ...over
})

describe("PrecopyProgress", () => {
  it("measures the dirty rate from what remained, what was sent and when", () => {
    const p = new PrecopyProgress()
    p.record(0, 100_000, 0)
    expect(p.dirtyRate).toBeUndefined()
    // Round 1: 80 000 sent in 1 s, 40 000 remain: 20 000 were dirtied.
    p.record(1000, 40_000, 80_000)
    expect(p.dirtyRate).toBeCloseTo(20_000, 6)
    // Round 2: 30 000 sent in 0.5 s, 30 000 remain: 20 000 dirtied; 40 000 over 1.5 s.
    p.record(1500, 30_000, 30_000)
    expect(p.dirtyRate).toBeCloseTo(40_000 / 1.5, 6)
    // A round that sent more than it had (remaining shrank by more than was sent) dirtied nothing, not less.
    p.record(2500, 0, 10_000)
    expect(p.dirtyRate).toBeCloseTo(40_000 / 2.5, 6)
    // Only the last three rounds count.
    p.record(3500, 50_000, 0)
    expect(p.dirtyRate).toBeCloseTo((20_000 + 0 + 50_000) / 2.5, 6)
    expect(p.history).toEqual([100_000, 40_000, 30_000, 0, 50_000])
  })

  it("says the remaining bytes stalled when a round leaves them not 10% below the least before", () => {
    const p = new PrecopyProgress()
    p.record(0, 1000, 0)
    expect(p.stall).toBeUndefined()
    p.record(1, 899, 500) // more than 10% below 1000
    expect(p.stall).toBeUndefined()
    p.record(2, 810, 500) // 810 > 0.9 × 899 = 809.1
    expect(p.stall).toEqual({ remaining: 810, leastBefore: 899 })
    p.record(3, 700, 500) // below 0.9 × 810 … and below 0.9 × 899 (the least before is 810)
    expect(p.stall).toBeUndefined()
    p.record(4, 950, 500) // dirtied faster than sent: growing is not shrinking
    expect(p.stall).toEqual({ remaining: 950, leastBefore: 700 })
  })
})

describe("decideSwitchover", () => {
  it("converges when the estimate is within the limit and every initial datum is acknowledged", () => {
    expect(decideSwitchover(outcome({ estimateMs: 100 }))).toMatchObject({ _tag: "Switch", reason: "converged" })
    expect(decideSwitchover(outcome({ estimateMs: 100, acknowledged: false }))).toEqual({ _tag: "Continue" })
  })

  it("stalls once acknowledged, with a finite estimate, when the remaining bytes stopped shrinking", () => {
    const stall = { remaining: 950, leastBefore: 1000 }
    const stalled = decideSwitchover(outcome({ stall }))
    expect(stalled).toMatchObject({ _tag: "Switch", reason: "stalled" })
    if (stalled._tag === "Switch") expect(stalled.why).toContain("round 2")
    expect(decideSwitchover(outcome({ stall, acknowledged: false }))).toEqual({ _tag: "Continue" })
    // An unknown stop-copy length makes the estimate unbounded: that device is read until it runs dry.
    expect(decideSwitchover(outcome({ stall, estimateMs: Number.POSITIVE_INFINITY }))).toEqual({ _tag: "Continue" })
    // Nothing left to send stalls too, whatever the estimate.
    expect(decideSwitchover(outcome({ sentBytes: 0, estimateMs: Number.POSITIVE_INFINITY }))).toMatchObject({
      _tag: "Switch",
      reason: "stalled"
    })
    expect(decideSwitchover(outcome({ sentBytes: 0, acknowledged: false }))).toEqual({
      _tag: "AwaitAcknowledgements"
    })
  })

  it("falls back on the round and time limits, naming the estimate against the limit", () => {
    const rounds = decideSwitchover(outcome({ round: 30 }))
    expect(rounds).toMatchObject({ _tag: "Switch", reason: "rounds" })
    if (rounds._tag === "Switch") expect(rounds.why).toContain("500 ms is over the limit of 100 ms")
    const time = decideSwitchover(outcome({ elapsedMs: 60_000 }))
    expect(time).toMatchObject({ _tag: "Switch", reason: "time" })
    // Within the limit but not acknowledged: the limit says so.
    const unacked = decideSwitchover(outcome({ round: 30, estimateMs: 50, acknowledged: false }))
    if (unacked._tag === "Switch") expect(unacked.why).toContain("not acknowledged")
    // Converged and stalled take precedence over a limit reached in the same round.
    expect(decideSwitchover(outcome({ round: 30, estimateMs: 50 }))).toMatchObject({ reason: "converged" })
    expect(decideSwitchover(outcome({ round: 30, stall: { remaining: 1, leastBefore: 1 } }))).toMatchObject({
      reason: "stalled"
    })
  })

  it("switches within ⌊ln(R₀/F) / −ln 0.9⌋ + 1 rounds when pre-copy shrinks toward a floor it cannot pass", () => {
    // A model the rule does not know: what is left after round n is F + (R₀ − F)·ρⁿ plus noise
    // of up to ±ε of it, the estimate never within the limit. Every round that does not stall
    // takes the least remaining down by 10% at least, and it never goes below F(1 − ε).
    fc.assert(
      fc.property(
        fc.integer({ min: 1_000, max: 1_000_000 }),
        fc.double({ min: 1.01, max: 1000, noNaN: true }),
        fc.double({ min: 0, max: 1.5, noNaN: true }),
        fc.array(fc.double({ min: -0.05, max: 0.05, noNaN: true }), { minLength: 200, maxLength: 200 }),
        (floor, ratio, rho, noise) => {
          const initial = floor * ratio
          const p = new PrecopyProgress()
          p.record(0, initial, 0)
          const bound = Math.floor(Math.log(initial / (floor * 0.95)) / -Math.log(0.9)) + 1
          for (let round = 1; round <= 200; round++) {
            const remaining = (floor + (initial - floor) * rho ** round) * (1 + (noise[round - 1] ?? 0))
            p.record(round, remaining, 1)
            const decision = decideSwitchover(outcome({ round, maxRounds: 1000, stall: p.stall }))
            if (decision._tag === "Switch") {
              expect(decision.reason).toBe("stalled")
              expect(round).toBeLessThanOrEqual(bound)
              return
            }
          }
          throw new Error("never switched")
        }
      )
    )
  })
})
