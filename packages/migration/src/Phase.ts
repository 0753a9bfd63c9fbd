/**
 * The phases of a migration, in order. Both sides name a failure by the phase it happened in:
 * - `handshake`: manifest offered and checked, migration id agreed; no device touched yet;
 * - `prepare`: source group → PRE_COPY where supported, destination group → RESUMING;
 * - `precopy`: rounds of reading every device concurrently while the group runs;
 * - `switchover`: source group → STOP_COPY through the quiescent states (downtime starts);
 * - `drain`: the final data of every device, until each reports End;
 * - `validate`: destination RESUMING → STOP, which checks the data, then votes to commit;
 * - `commit`: the source records COMMIT in its journal and tells the destination;
 * - `resume`: destination STOP → quiesced → RUNNING, and its confirmation.
 */
export type Phase = "handshake" | "prepare" | "precopy" | "switchover" | "drain" | "validate" | "commit" | "resume"

/** Every phase, in order. */
export const Phases: ReadonlyArray<Phase> = [
  "handshake",
  "prepare",
  "precopy",
  "switchover",
  "drain",
  "validate",
  "commit",
  "resume"
]

/** Which end of the channel: the group giving its state, or the group taking it. */
export type Side = "source" | "destination"
