/*
 * Scenarios for the suites that kill a process at a journal step. Two small GPUs; the arcs
 * that follow a journal step are slow (1 s), so that a test watching the journal file has
 * time to act while the migration is at that step: the source's RUNNING → PRE_COPY comes just
 * after `started`, the destination's STOP → RUNNING_P2P (its resume) just after `committed`.
 */
import { writeFile } from "node:fs/promises"
import { join } from "node:path"

const gpu = (id: string) => ({
  id,
  kind: "pci",
  flags: ["STOP_COPY", "P2P", "PRE_COPY"],
  sim: {
    stateSize: 262_144,
    precopyInitialBytes: 196_608,
    dirtyBytesPerSecond: 65_536,
    arcLatencyMs: 1,
    arcLatenciesMs: { "RUNNING>PRE_COPY": 1000, "STOP>RUNNING_P2P": 1000 }
  }
})

/** The scenario: both sides build their group from it. */
export const slowStepsScenario = {
  devices: [gpu("gpu0"), gpu("gpu1")],
  topology: "shared-iommu",
  seed: 3,
  p2pWritesPerSecond: 500,
  migration: { downtimeLimitMs: 5000 }
}

/** Writes the scenario into `dir` and answers its path. */
export const writeSlowStepsScenario = async (dir: string): Promise<string> => {
  const file = join(dir, "slow-steps.json")
  await writeFile(file, JSON.stringify(slowStepsScenario))
  return file
}
