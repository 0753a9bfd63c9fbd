import { Schema, SchemaGetter } from "effect"

/**
 * The migration states of a VFIO device, with their uAPI numbers
 * (`enum vfio_device_mig_state` in `include/uapi/linux/vfio.h`).
 */
export const StateNumber = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7
} as const

/** A migration state, named as in the uAPI without the `VFIO_DEVICE_STATE_` prefix. */
export type State = keyof typeof StateNumber

/** Every state, in uAPI number order. */
export const States: ReadonlyArray<State> = [
  "ERROR",
  "STOP",
  "RUNNING",
  "STOP_COPY",
  "RESUMING",
  "RUNNING_P2P",
  "PRE_COPY",
  "PRE_COPY_P2P"
]

/** Each state's short name, for tables and bars too narrow for the full one (`lockstep fsm table` prints them). */
export const StateShortNames: Readonly<Record<State, string>> = {
  ERROR: "E",
  STOP: "S",
  RUNNING: "R",
  STOP_COPY: "SC",
  RESUMING: "RS",
  RUNNING_P2P: "RP",
  PRE_COPY: "PC",
  PRE_COPY_P2P: "PCP"
}

/** The state with a given uAPI number, if the number is one. */
export const stateOfNumber = (n: number): State | undefined => States[n]

/**
 * The saving group: the states that share one saving data session. Entering the group
 * opens the session, leaving it closes it.
 */
export const isSaving = (s: State): boolean => s === "PRE_COPY" || s === "PRE_COPY_P2P" || s === "STOP_COPY"

/**
 * What a device in a state may do to its P2P peers (DESIGN.md section 2):
 * - `initiating`: may start any DMA, P2P included (ERROR counts: it may do anything its
 *   previous state allowed);
 * - `quiesced`: starts no new P2P DMA but still accepts incoming accesses;
 * - `halted`: no DMA, and anything written into it corrupts the state being saved or loaded.
 */
export type StateClass = "initiating" | "quiesced" | "halted"

const classes: Record<State, StateClass> = {
  ERROR: "initiating",
  RUNNING: "initiating",
  PRE_COPY: "initiating",
  RUNNING_P2P: "quiesced",
  PRE_COPY_P2P: "quiesced",
  STOP: "halted",
  STOP_COPY: "halted",
  RESUMING: "halted"
}

/** The P2P class of a state. */
export const stateClass = (s: State): StateClass => classes[s]

const StateName = Schema.Literals(States)

const StateFromNumber = Schema.Literals([0, 1, 2, 3, 4, 5, 6, 7]).pipe(
  Schema.decodeTo(StateName, {
    decode: SchemaGetter.transform((n: number) => States[n] ?? "ERROR"),
    encode: SchemaGetter.transform((s: State) => StateNumber[s])
  })
)

/**
 * Decodes a state from its name (`"STOP_COPY"`) or its uAPI number (`3`);
 * encodes to the name.
 */
export const StateSchema: Schema.Codec<State, State | number> = Schema.Union([StateName, StateFromNumber]).annotate({
  identifier: "State",
  description: `a VFIO migration state: one of ${States.join(", ")}, or its uAPI number 0-7`
})
