import type { TransitionEvent, TransitionOptions } from "@lockstep/coordinator"
import type { ArcTimings } from "./Estimate.js"
import type { EventSink } from "./Events.js"
import type { ResolvedSessionOptions } from "./Options.js"
import type { Side } from "./Phase.js"

/*
 * A session's group transitions: the options it runs them with, the watch that says whether a
 * device was touched yet, and the states the devices report afterwards.
 */

/** The options of a group transition run by a session: its policies, its events forwarded, its arcs timed. */
export const transitionOptions = (
  o: ResolvedSessionOptions,
  side: Side,
  step: string,
  timings: ArcTimings | undefined,
  also?: (event: TransitionEvent) => void
): TransitionOptions => ({
  errorPolicy: o.errorPolicy,
  arcTimeoutMs: o.arcTimeoutMs,
  concurrency: o.arcConcurrency,
  onEvent: (event) => {
    timings?.observe(event)
    also?.(event)
    o.onEvent({ _tag: "GroupTransition", side, step, event })
  }
})

/** Whether a group-transition event moved or reset a device (an arc started, a reset): from then on the side has touched its group. */
export const movesDevice = (event: TransitionEvent): boolean =>
  event._tag === "ArcStarted" || event._tag === "DeviceReset"

/**
 * Watches a side's group transitions: `touched()` turns true once a device was moved or reset
 * (until then a failure touched nothing). Pass `options` on, in place of the caller's.
 */
export const watchTouched = <O extends { readonly onEvent?: EventSink | undefined }>(
  caller: O
): { readonly options: O; readonly touched: () => boolean } => {
  let touched = false
  return {
    options: {
      ...caller,
      onEvent: (event: Parameters<EventSink>[0]) => {
        if (event._tag === "GroupTransition" && movesDevice(event.event)) touched = true
        caller.onEvent?.(event)
      }
    },
    touched: () => touched
  }
}
