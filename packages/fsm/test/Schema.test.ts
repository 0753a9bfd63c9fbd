import { describe, expect, it } from "@effect/vitest"
import { FlagNames, FlagsSchema, flagNames, StateNumber, StateSchema, States } from "@lockstep/fsm"
import { Result, Schema } from "effect"
import * as fc from "fast-check"

const decodeState = Schema.decodeUnknownResult(StateSchema)
const encodeState = Schema.encodeUnknownResult(StateSchema)
const decodeFlags = Schema.decodeUnknownResult(FlagsSchema)
const encodeFlags = Schema.encodeUnknownResult(FlagsSchema)

describe("StateSchema", () => {
  it("decodes names and uAPI numbers to the same state", () => {
    for (const s of States) {
      expect(Result.getOrThrow(decodeState(s))).toBe(s)
      expect(Result.getOrThrow(decodeState(StateNumber[s]))).toBe(s)
    }
  })

  it("round-trips every state through its encoding", () => {
    fc.assert(
      fc.property(fc.constantFrom(...States), (s) => {
        const encoded = Result.getOrThrow(encodeState(s))
        expect(encoded).toBe(s)
        expect(Result.getOrThrow(decodeState(encoded))).toBe(s)
      })
    )
  })

  it("rejects anything else with a message listing the valid names", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string().filter((s) => !(States as ReadonlyArray<string>).includes(s)),
          fc.integer().filter((n) => n < 0 || n > 7),
          fc.constant(null)
        ),
        (bad) => {
          const r = decodeState(bad)
          expect(Result.isFailure(r)).toBe(true)
        }
      )
    )
    const r = decodeState("RUNING")
    expect(Result.isFailure(r) && r.failure.message).toContain("STOP_COPY")
  })
})

describe("FlagsSchema", () => {
  it("decodes name lists and masks alike, and encodes to names in canonical order", () => {
    fc.assert(
      fc.property(fc.subarray([...FlagNames]), fc.boolean(), (names, shuffle) => {
        const input = shuffle ? [...names].reverse() : names
        const mask = Result.getOrThrow(decodeFlags(input))
        expect(Result.getOrThrow(decodeFlags(mask))).toBe(mask)
        expect(Result.getOrThrow(encodeFlags(mask))).toEqual(flagNames(mask))
        expect(flagNames(mask)).toEqual(names)
      })
    )
  })

  it("rejects unknown names and out-of-range masks", () => {
    expect(Result.isFailure(decodeFlags(["STOP_COPY", "P2PP"]))).toBe(true)
    expect(Result.isFailure(decodeFlags(8))).toBe(true)
    expect(Result.isFailure(decodeFlags(1.5))).toBe(true)
    expect(Result.isFailure(decodeFlags("STOP_COPY"))).toBe(true)
  })
})
