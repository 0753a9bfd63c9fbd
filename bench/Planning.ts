import { planTransition } from "@lockstep/coordinator"
import { Effect, Result } from "effect"
import { atMost, contextRow, type Figure, goalRow, median, spread } from "./Figure.js"
import { sharedIommuGroup } from "./Groups.js"

/** Settings of figure 3. */
export interface PlanningOptions {
  readonly sizes: readonly [small: number, large: number]
  readonly warmup: number
  readonly repetitions: number
}

/**
 * Figure 3: how long `planTransition` takes to plan RUNNING → STOP_COPY for a shared-IOMMU group
 * (one clique of every device), in real time, and how that grows with the group.
 */
export const planningFigure = (options: PlanningOptions): Effect.Effect<Figure> =>
  Effect.gen(function* () {
    const [small, large] = options.sizes
    const timeOf = (n: number) =>
      Effect.gen(function* () {
        const group = yield* sharedIommuGroup(n)
        const once = (): number => {
          const start = performance.now()
          const plan = planTransition(group, { to: "STOP_COPY" })
          const elapsed = performance.now() - start
          if (Result.isFailure(plan)) throw new Error(`planning ${n} devices failed: ${plan.failure.message}`)
          if (plan.success.arcs.length !== 3 * n) throw new Error(`expected ${3 * n} arcs`)
          return elapsed
        }
        for (let i = 0; i < options.warmup; i++) once()
        const samples = Array.from({ length: options.repetitions }, once)
        return { n, median: median(samples), samples }
      })
    const a = yield* timeOf(small)
    const b = yield* timeOf(large)
    const ratio = b.median / a.median
    const perDevice = (r: { readonly n: number; readonly median: number }) => (r.median * 1000) / r.n
    return {
      figure: 3,
      title: "Planning (real time)",
      method: `planTransition RUNNING → STOP_COPY of a shared-IOMMU group; median of ${options.repetitions} after ${options.warmup} warm-up runs.`,
      rows: [
        goalRow(`plan ${small} devices`, a.median, "ms", atMost(100, "< 100 ms")),
        contextRow(`plan ${large} devices`, b.median, "ms"),
        goalRow(`${large}/${small} time ratio`, ratio, "×", atMost(5, "≤ 5 (4.0 = linear)"))
      ],
      notes: [
        `samples: ${small} devices ${spread(a.samples, 1)} ms (${perDevice(a).toFixed(1)} µs/device); ${large} devices ${spread(b.samples, 1)} ms (${perDevice(b).toFixed(1)} µs/device).`
      ]
    } satisfies Figure
  })
