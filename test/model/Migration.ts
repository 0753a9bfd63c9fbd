import type { State } from "@lockstep/fsm"
import type { ModelGroup } from "./Edges.js"
import { peerClass } from "./Kernel.js"
import type { Policy } from "./Rollback.js"

/**
 * Where both groups of a migration end, by who owns the group when it is over (DESIGN.md section 3):
 * - the destination owns it (the source journalled COMMIT and nothing renounced it): the destination
 *   runs (every device RUNNING) and the source stays stopped in STOP_COPY, its final state sent.
 *   DESIGN.md is silent on a resume that fails after COMMIT; Lockstep's rule (README): the
 *   destination tries again and never resets a device holding the migrated state, so a group whose
 *   resume arcs keep failing is reported (`ResumeIncomplete`) where its last attempt left it;
 * - otherwise (no decision, or ABORT): before commit, any failure on either side rolls the source
 *   back to RUNNING and resets the destination's devices; the destination then parks them in STOP,
 *   so that nothing of the failed migration ever runs (README, `@lockstep/migration`).
 * Under the `quarantine` policy (DESIGN.md section 2) a device found in ERROR stays there, and a
 * device it may write into is kept out of the halted states: on the destination, where parking
 * would halt it, it stays reset in RUNNING.
 */
export type Owner = "source" | "destination"

/** Every device's state at the end of a migration, on each side. */
export const expectedAfterMigration = (
  source: ModelGroup,
  destination: ModelGroup,
  owner: Owner,
  policy: Policy = "reset",
  /** Devices that went into ERROR on each side during the migration. */
  inError: { readonly source: ReadonlySet<string>; readonly destination: ReadonlySet<string> } = {
    source: new Set(),
    destination: new Set()
  }
): { readonly source: Record<string, State>; readonly destination: Record<string, State> } => {
  const side = (group: ModelGroup, failed: ReadonlySet<string>, home: State): Record<string, State> => {
    const quarantined = policy === "quarantine" ? failed : new Set<string>()
    const guarded = new Set(group.edges.filter(([a, b]) => quarantined.has(a) && !quarantined.has(b)).map(([, b]) => b))
    return Object.fromEntries(
      group.devices.map((d): [string, State] =>
        quarantined.has(d.id)
          ? [d.id, "ERROR"]
          : guarded.has(d.id) && peerClass[home] === "halted"
            ? [d.id, "RUNNING"]
            : [d.id, home]
      )
    )
  }
  return owner === "destination"
    ? {
        source: Object.fromEntries(source.devices.map((d) => [d.id, "STOP_COPY"])),
        destination: Object.fromEntries(destination.devices.map((d) => [d.id, "RUNNING"]))
      }
    : { source: side(source, inError.source, "RUNNING"), destination: side(destination, inError.destination, "STOP") }
}
