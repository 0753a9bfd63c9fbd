import { planTransition } from "@lockstep/coordinator"
import { Effect, Result } from "effect"
import { atMost, type Figure, goalRow, median, sampledRow, spread } from "./Figure.js"
import { sharedIommuGroup } from "./Groups.js"

/** Settings of figure 3. */
export interface PlanningOptions {
  readonly sizes: readonly [small: number, large: number]
  readonly warmup: number
  readonly repetitions: number
}

/**
 * The growth planning is expected to show from `small` to `large` devices: N log N, from the sort
 * of the plan's arcs by level; the rest is expected linear (a plan is linear in the group: a
 * shared-IOMMU clique waits on one barrier, not on N² edges).
 */
export const expectedGrowth = (small: number, large: number): number =>
  (large * Math.log2(large)) / (small * Math.log2(small))

/** How far above the expected growth a measured ratio may come before it counts as worse growth. */
const growthTolerance = 1.25

/**
 * Figure 3: how long `planTransition` takes to plan RUNNING → STOP_COPY for a shared-IOMMU group
 * (one clique of every device), in real time, and how that grows with the group. The two sizes
 * are planned alternately, so that each repetition's ratio is taken between runs that saw the
 * same machine.
 */
export const planningFigure = (options: PlanningOptions): Effect.Effect<Figure> =>
  Effect.gen(function* () {
    const [small, large] = options.sizes
    const groups = [yield* sharedIommuGroup(small), yield* sharedIommuGroup(large)] as const
    /**
     * `times` plannings of `n` devices, in ms per planning: CPU time of this process (what another
     * process's load leaves alone) and wall time. The small group is planned large/small times
     * per sample, so that both samples do the same work and hold about as many young-generation
     * collections: one planning of 1024 devices (~2 ms) often has none while one of 4096 always
     * has some, which made the ratio of the minima swing (4.89 and 8.39 in two runs).
     */
    const timed = (
      n: number,
      group: (typeof groups)[number],
      times: number
    ): { readonly cpu: number; readonly wall: number } => {
      const cpu = process.cpuUsage()
      const start = performance.now()
      for (let k = 0; k < times; k++) {
        const plan = planTransition(group, { to: "STOP_COPY" })
        if (Result.isFailure(plan)) throw new Error(`planning ${n} devices failed: ${plan.failure.message}`)
        if (plan.success.arcs.length !== 3 * n) throw new Error(`expected ${3 * n} arcs`)
      }
      const wall = performance.now() - start
      const used = process.cpuUsage(cpu)
      return { cpu: (used.user + used.system) / 1000 / times, wall: wall / times }
    }
    const batch = Math.max(1, Math.round(large / small))
    const a: Array<number> = []
    const b: Array<number> = []
    const wallA: Array<number> = []
    const wallB: Array<number> = []
    for (let i = 0; i < options.warmup + options.repetitions; i++) {
      const x = timed(small, groups[0], batch)
      const y = timed(large, groups[1], 1)
      if (i >= options.warmup) {
        a.push(x.cpu)
        b.push(y.cpu)
        wallA.push(x.wall)
        wallB.push(y.wall)
      }
    }
    const expected = expectedGrowth(small, large)
    const limit = expected * growthTolerance
    const ratios = a.map((x, i) => (b[i] ?? Number.NaN) / x)
    const perDevice = (samples: ReadonlyArray<number>, n: number) => ((median(samples) * 1000) / n).toFixed(1)
    return {
      figure: 3,
      title: "Planning (real time)",
      method: `planTransition RUNNING → STOP_COPY of a shared-IOMMU group, timed in CPU time of this process (process.cpuUsage: another process's load does not count, as it does in wall time) and in wall time; ${options.repetitions} repetitions after ${options.warmup} warm-up, each planning ${small} devices ${batch} times (the time per planning is the sample: the same work as one planning of ${large}) then ${large} devices once; the ratio is taken per repetition, and judged between the minima: the garbage one size leaves is collected during the other's run, so a single pair's ratio is noise on a loaded machine, while each minimum is the run least disturbed. Expected growth: N log N (the sort of the arcs), ${large}/${small} = ${expected.toFixed(2)}; the goal allows ×${growthTolerance} of it.`,
      rows: [
        sampledRow(`plan ${small} devices, CPU`, a, "ms", atMost(100, "< 100 ms")),
        sampledRow(`plan ${large} devices, CPU`, b, "ms"),
        sampledRow(`plan ${small} devices, wall`, wallA, "ms"),
        sampledRow(`plan ${large} devices, wall`, wallB, "ms"),
        sampledRow(`${large}/${small} time ratio, per repetition`, ratios, "×"),
        goalRow(
          `${large}/${small} time ratio of the minima`,
          Math.min(...b) / Math.min(...a),
          "×",
          atMost(limit, `≤ ${limit.toFixed(2)} (N log N: ${expected.toFixed(2)})`)
        )
      ],
      notes: [
        `CPU samples: ${small} devices ${spread(a, 1)} ms (median ${perDevice(a, small)} µs/device); ${large} devices ${spread(b, 1)} ms (median ${perDevice(b, large)} µs/device).`
      ]
    } satisfies Figure
  })
