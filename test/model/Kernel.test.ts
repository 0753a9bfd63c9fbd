import { describe, expect, it } from "@effect/vitest"
import { AllFlagSets, arcsFor, path } from "@lockstep/fsm"
import { Result } from "effect"
import { allStates, directArcs, kernelPath } from "./Model.js"

/** `@lockstep/fsm` judged by the model: the same combination transition, or a refusal, for every case. */
describe("model: @lockstep/fsm walks every combination transition as the kernel does", () => {
  it("every flag set × from × to: the same path or a refusal", () => {
    let compared = 0
    for (const flags of AllFlagSets)
      for (const from of allStates)
        for (const to of allStates) {
          const model = kernelPath(flags, from, to)
          const fsm = path(from, to, flags)
          expect(Result.isSuccess(fsm) ? fsm.success : "refused", `flags ${flags}: ${from} → ${to}`).toEqual(
            model.ok ? model.states : "refused"
          )
          compared++
        }
    expect(compared).toBe(8 * 8 * 8)
  })

  it("every flag set: the same direct arcs", () => {
    for (const flags of AllFlagSets) {
      const key = (a: { readonly from: string; readonly to: string }) => `${a.from}>${a.to}`
      expect(arcsFor(flags).map(key).sort(), `flags ${flags}`).toEqual(directArcs(flags).map(key).sort())
    }
  })
})
