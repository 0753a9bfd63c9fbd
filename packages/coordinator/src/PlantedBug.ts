import { Context } from "effect"

/**
 * TEST-ONLY SEAM. A known ordering or rollback bug that the fuzzers in `test/fuzz` must catch,
 * planted in the real code paths so that a fuzzer that passes on the real code is shown to fail
 * on a broken one:
 * - `stop-target-before-initiator-quiesces`: the planner drops its down-dependencies (an arc
 *   into a halted state no longer waits for the initiators of its device to quiesce);
 * - `skip-rollback-of-one-device`: the rollback leaves one device that has to move back where
 *   it is;
 * - `forget-state-readback`: the rollback assumes each device is where the plan's completed
 *   arcs put it (a failed arc leaving it where it was) instead of reading the states back;
 * - `release-next-phase-early`: the arc runner starts an arc when all but one of its
 *   dependencies are done.
 */
export type PlantedBug =
  | "stop-target-before-initiator-quiesces"
  | "skip-rollback-of-one-device"
  | "forget-state-readback"
  | "release-next-phase-early"

/** Every planted bug. */
export const PlantedBugs: ReadonlyArray<PlantedBug> = [
  "stop-target-before-initiator-quiesces",
  "skip-rollback-of-one-device",
  "forget-state-readback",
  "release-next-phase-early"
]

/**
 * TEST-ONLY SEAM. The bug planted in `transition`, its rollback and `runGraph`; none by default,
 * and nothing but tests ever provides it: `Effect.provideService(PlantedBug, "forget-state-readback")`.
 * The planner takes the same value explicitly, as `planTransition`'s `plantedBug`.
 */
export const PlantedBug = Context.Reference<PlantedBug | undefined>("@lockstep/coordinator/PlantedBug", {
  defaultValue: () => undefined
})
