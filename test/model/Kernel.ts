import type { Flags, State } from "@lockstep/fsm"

/**
 * The single-device state machine as the kernel states it (`drivers/vfio/vfio_main.c`,
 * `vfio_mig_get_next_state`, and `include/uapi/linux/vfio.h`), written down again for the
 * reference model: it shares nothing with `@lockstep/fsm` but the type of a state name.
 *
 * The kernel's rule is data: a table `next[current][requested]` of the next state to step to when
 * a device has every optional feature, and a loop that skips states the device does not support
 * (by stepping again from the skipped state towards the same request). A combination transition
 * is that step repeated until the requested state is reached.
 */

/** Every state of the uAPI, in uAPI number order (ERROR=0 … PRE_COPY_P2P=7). */
export const allStates: ReadonlyArray<State> = [
  "ERROR",
  "STOP",
  "RUNNING",
  "STOP_COPY",
  "RESUMING",
  "RUNNING_P2P",
  "PRE_COPY",
  "PRE_COPY_P2P"
]

/** The states a caller may request (ERROR cannot be requested). */
export const requestableStates: ReadonlyArray<State> = allStates.filter((s) => s !== "ERROR")

/** `vfio_from_fsm_table`: the next state from `current` (outer key) towards `requested` (inner key), all features present. */
const next: Readonly<Record<State, Readonly<Record<State, State>>>> = {
  STOP: {
    STOP: "STOP",
    RUNNING: "RUNNING_P2P",
    PRE_COPY: "RUNNING_P2P",
    PRE_COPY_P2P: "RUNNING_P2P",
    STOP_COPY: "STOP_COPY",
    RESUMING: "RESUMING",
    RUNNING_P2P: "RUNNING_P2P",
    ERROR: "ERROR"
  },
  RUNNING: {
    STOP: "RUNNING_P2P",
    RUNNING: "RUNNING",
    PRE_COPY: "PRE_COPY",
    PRE_COPY_P2P: "RUNNING_P2P",
    STOP_COPY: "RUNNING_P2P",
    RESUMING: "RUNNING_P2P",
    RUNNING_P2P: "RUNNING_P2P",
    ERROR: "ERROR"
  },
  PRE_COPY: {
    STOP: "RUNNING",
    RUNNING: "RUNNING",
    PRE_COPY: "PRE_COPY",
    PRE_COPY_P2P: "PRE_COPY_P2P",
    STOP_COPY: "PRE_COPY_P2P",
    RESUMING: "RUNNING",
    RUNNING_P2P: "RUNNING",
    ERROR: "ERROR"
  },
  PRE_COPY_P2P: {
    STOP: "RUNNING_P2P",
    RUNNING: "RUNNING_P2P",
    PRE_COPY: "PRE_COPY",
    PRE_COPY_P2P: "PRE_COPY_P2P",
    STOP_COPY: "STOP_COPY",
    RESUMING: "RUNNING_P2P",
    RUNNING_P2P: "RUNNING_P2P",
    ERROR: "ERROR"
  },
  STOP_COPY: {
    STOP: "STOP",
    RUNNING: "STOP",
    PRE_COPY: "ERROR",
    PRE_COPY_P2P: "ERROR",
    STOP_COPY: "STOP_COPY",
    RESUMING: "STOP",
    RUNNING_P2P: "STOP",
    ERROR: "ERROR"
  },
  RESUMING: {
    STOP: "STOP",
    RUNNING: "STOP",
    PRE_COPY: "STOP",
    PRE_COPY_P2P: "STOP",
    STOP_COPY: "STOP",
    RESUMING: "RESUMING",
    RUNNING_P2P: "STOP",
    ERROR: "ERROR"
  },
  RUNNING_P2P: {
    STOP: "STOP",
    RUNNING: "RUNNING",
    PRE_COPY: "RUNNING",
    PRE_COPY_P2P: "PRE_COPY_P2P",
    STOP_COPY: "STOP",
    RESUMING: "STOP",
    RUNNING_P2P: "RUNNING_P2P",
    ERROR: "ERROR"
  },
  ERROR: {
    STOP: "ERROR",
    RUNNING: "ERROR",
    PRE_COPY: "ERROR",
    PRE_COPY_P2P: "ERROR",
    STOP_COPY: "ERROR",
    RESUMING: "ERROR",
    RUNNING_P2P: "ERROR",
    ERROR: "ERROR"
  }
}

/** Capability bits of the uAPI: `VFIO_MIGRATION_STOP_COPY`, `_P2P`, `_PRE_COPY`. */
export const flagBits = { STOP_COPY: 1, P2P: 2, PRE_COPY: 4 } as const

/**
 * `state_flags_table`: the capabilities a device needs to have a state. ERROR needs every bit
 * there is (`~0U`), so no device "supports" it: it can be neither requested nor requested from.
 */
const needs: Readonly<Record<State, number>> = {
  STOP: 1,
  RUNNING: 1,
  STOP_COPY: 1,
  RESUMING: 1,
  PRE_COPY: 1 | 4,
  RUNNING_P2P: 1 | 2,
  PRE_COPY_P2P: 1 | 2 | 4,
  ERROR: ~0
}

/** Whether a device with `flags` may be in (and be asked for) state `s`. */
export const supports = (flags: Flags, s: State): boolean => (needs[s] & flags) === needs[s]

/** The kernel's answer to one request: the state it steps to next, or the refusal (`-EINVAL`). */
export type Step = { readonly ok: true; readonly next: State } | { readonly ok: false; readonly reason: string }

/**
 * `vfio_mig_get_next_state`: where a device in `current` steps next when `requested` is asked.
 * Where the kernel's skip loop would land on ERROR it refuses; the model stops there instead of
 * looping (the table maps ERROR to ERROR, which no device supports: some kernels spin forever on
 * STOP_COPY → PRE_COPY, and DESIGN.md asks for a clean error).
 */
export const nextStep = (flags: Flags, current: State, requested: State): Step => {
  if (!supports(flags, current)) return { ok: false, reason: `the device cannot be in ${current}` }
  if (!supports(flags, requested)) return { ok: false, reason: `the device cannot be asked for ${requested}` }
  let step = next[current][requested]
  while (step !== "ERROR" && !supports(flags, step)) step = next[step][requested]
  return step === "ERROR" ? { ok: false, reason: `${current} → ${requested} is blocked` } : { ok: true, next: step }
}

/** A combination transition as the kernel walks it: every state from `from` to `to`, or why it refuses. */
export type KernelPath =
  | { readonly ok: true; readonly states: ReadonlyArray<State> }
  | { readonly ok: false; readonly reason: string }

/**
 * The states a device passes through when `to` is requested in `from`: the kernel's step
 * repeated until it arrives. Requesting the current state is a no-op (the path is `[from]`) for a
 * supported state, and refused in ERROR, as the kernel does.
 */
export const kernelPath = (flags: Flags, from: State, to: State): KernelPath => {
  const states: Array<State> = [from]
  let at = from
  if (from === to) {
    const step = nextStep(flags, from, to)
    return step.ok ? { ok: true, states } : step
  }
  while (at !== to) {
    const step = nextStep(flags, at, to)
    if (!step.ok) return step
    at = step.next
    states.push(at)
    if (states.length > allStates.length) return { ok: false, reason: `${from} → ${to} does not arrive` }
  }
  return { ok: true, states }
}

/** One direct arc a device performs: a single SET_STATE that its driver implements. */
export interface ModelArc {
  readonly from: State
  readonly to: State
}

const arcsByFlags = new Map<Flags, ReadonlyArray<ModelArc>>()

/** Every direct arc a device with `flags` is ever asked for: the steps of every combination transition. */
export const directArcs = (flags: Flags): ReadonlyArray<ModelArc> => {
  const known = arcsByFlags.get(flags)
  if (known !== undefined) return known
  const arcs = deriveArcs(flags)
  arcsByFlags.set(flags, arcs)
  return arcs
}

const deriveArcs = (flags: Flags): ReadonlyArray<ModelArc> => {
  const seen = new Map<string, ModelArc>()
  for (const from of requestableStates)
    for (const to of requestableStates) {
      const step = nextStep(flags, from, to)
      if (step.ok && step.next !== from) seen.set(`${from}>${step.next}`, { from, to: step.next })
    }
  return [...seen.values()]
}

/**
 * What a device in a state may do to its P2P peers (DESIGN.md section 2): `initiating` may issue
 * any DMA (ERROR counts: it may still do anything its previous state allowed), `quiesced` starts
 * no P2P DMA, `halted` does no DMA and is corrupted by any write into it.
 */
export type PeerClass = "initiating" | "quiesced" | "halted"

export const peerClass: Readonly<Record<State, PeerClass>> = {
  RUNNING: "initiating",
  PRE_COPY: "initiating",
  ERROR: "initiating",
  RUNNING_P2P: "quiesced",
  PRE_COPY_P2P: "quiesced",
  STOP: "halted",
  STOP_COPY: "halted",
  RESUMING: "halted"
}

/** The saving group: PRE_COPY, PRE_COPY_P2P and STOP_COPY share one saving data session. */
export const hasSavingSession = (s: State): boolean => s === "PRE_COPY" || s === "PRE_COPY_P2P" || s === "STOP_COPY"

/** STOP → RESUMING opens a resume session; only RESUMING has one. */
export const hasResumeSession = (s: State): boolean => s === "RESUMING"
