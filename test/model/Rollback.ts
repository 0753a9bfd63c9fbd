import type { State } from "@lockstep/fsm"
import type { ModelDevice, ModelEdge } from "./Edges.js"
import { kernelPath, peerClass } from "./Kernel.js"

/**
 * Where every device must end after a group transition fails, under each ERROR policy
 * (DESIGN.md section 2, "Failure"): a transition is a transaction; on any failure, interruption or
 * timeout the group is rolled back to where it started, obeying the invariant on the way.
 *
 * What the model adds, each from DESIGN.md or the uAPI:
 * - A device found in ERROR (the real state read back when the rollback begins): under `reset` it
 *   is reset, and a reset returns RUNNING, where it stays; under `quarantine` it stays in ERROR,
 *   and every device it may write into is kept out of the halted states: one that started halted
 *   is reset (to RUNNING) instead of going back.
 * - A device that cannot go back the way it came: the uAPI refuses STOP_COPY → PRE_COPY and
 *   STOP_COPY → PRE_COPY_P2P (once the saving session reached STOP_COPY it cannot return to
 *   pre-copy). It goes to the state of the same peer class without the saving session: RUNNING for
 *   PRE_COPY, RUNNING_P2P for PRE_COPY_P2P.
 * - RESUMING is left only by a reset (or by validating a complete stream): a device caught there
 *   is reset and then goes back to where it started, like any other.
 * A device just reset has its bus mastering off (a PCI function-level reset clears it) and starts
 * no DMA until it is next made to run, so a reset device in RUNNING does not stop its targets from
 * going back to halted starting states.
 */

/** The ERROR policies of DESIGN.md. */
export type Policy = "reset" | "quarantine"

/** The state without the saving session that a pre-copy start falls back to, of the same peer class. */
const withoutSavingSession: Partial<Record<State, State>> = { PRE_COPY: "RUNNING", PRE_COPY_P2P: "RUNNING_P2P" }

/** Where a device that is not in ERROR goes back to: its start, or its fallback when the kernel forbids the way. */
export const wayBack = (device: ModelDevice, current: State, start: State): State => {
  if (current === start) return start
  // A device in RESUMING is reset first: it then goes back from RUNNING.
  const from = current === "RESUMING" ? "RUNNING" : current
  return kernelPath(device.flags, from, start).ok ? start : (withoutSavingSession[start] ?? "RUNNING")
}

/** The devices left in ERROR for diagnosis. */
export const quarantinedBy = (
  devices: ReadonlyArray<ModelDevice>,
  atRollback: Readonly<Record<string, State>>,
  policy: Policy
): Array<string> =>
  policy === "quarantine" ? devices.filter((d) => atRollback[d.id] === "ERROR").map((d) => d.id) : []

/**
 * Where every device must be once the rollback completes, from the states the devices started in,
 * the states they were really in when the rollback began, and the policy.
 */
export const expectedAfterFailure = (
  devices: ReadonlyArray<ModelDevice>,
  edges: ReadonlyArray<ModelEdge>,
  start: Readonly<Record<string, State>>,
  atRollback: Readonly<Record<string, State>>,
  policy: Policy
): Record<string, State> => {
  const quarantined = new Set(quarantinedBy(devices, atRollback, policy))
  const guarded = new Set(edges.filter(([a, b]) => quarantined.has(a) && !quarantined.has(b)).map(([, b]) => b))
  return Object.fromEntries(
    devices.map((d): [string, State] => {
      const begin = start[d.id] ?? "RUNNING"
      const current = atRollback[d.id] ?? "ERROR"
      if (quarantined.has(d.id)) return [d.id, "ERROR"]
      if (guarded.has(d.id) && peerClass[begin] === "halted") return [d.id, "RUNNING"]
      if (current === "ERROR") return [d.id, "RUNNING"]
      return [d.id, wayBack(d, current, begin)]
    })
  )
}
