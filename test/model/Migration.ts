import type { State } from "@lockstep/fsm"
import type { ModelGroup } from "./Edges.js"

/**
 * Where both groups of a migration end, by who owns the group when it is over (DESIGN.md section 3):
 * - the destination owns it (the source journalled COMMIT and nothing renounced it): the destination
 *   runs (every device RUNNING) and the source stays stopped in STOP_COPY, its final state sent;
 * - otherwise (no decision, or ABORT): before commit, any failure on either side rolls the source
 *   back to RUNNING and resets the destination's devices; the destination then parks them in STOP,
 *   so that nothing of the failed migration ever runs (README, `@lockstep/migration`).
 * The ERROR policy here is `reset` (a device in ERROR is reset like the others).
 */
export type Owner = "source" | "destination"

/** Every device's state at the end of a migration, on each side. */
export const expectedAfterMigration = (
  source: ModelGroup,
  destination: ModelGroup,
  owner: Owner
): { readonly source: Record<string, State>; readonly destination: Record<string, State> } => ({
  source: Object.fromEntries(source.devices.map((d) => [d.id, owner === "destination" ? "STOP_COPY" : "RUNNING"])),
  destination: Object.fromEntries(destination.devices.map((d) => [d.id, owner === "destination" ? "RUNNING" : "STOP"]))
})
