import type { ErrorCode } from "@lockstep/device"
import type { Arc, State } from "@lockstep/fsm"

/**
 * Where a device is at an instant: its state and the arc in flight, if any. A device with an
 * arc in flight is still in the arc's `from` state (that is what it reports) but, for the P2P
 * invariant, counts as being at both ends of the arc.
 */
export interface DeviceStatus {
  readonly state: State
  readonly inFlight?: Arc
}

/** Every event carries the device, the virtual time in ms, and the device's status after it. */
interface EventBase extends DeviceStatus {
  readonly device: string
  readonly at: number
}

/**
 * One change of a simulated device's status, as reported to its fabric and to observers.
 * - `ArcStarted`: a legal arc was accepted and is now in flight (`nth`: 1-based arc count);
 * - `ArcCompleted`: the arc landed in its target state;
 * - `ArcFailed`: the arc failed (an injected fault or bad resume data); `state` is where it left the device;
 * - `ArcInterrupted`: the arc's fiber was interrupted; `state` is where that left the device (its
 *   original state, unless a `LandOnInterrupt` fault landed it in its target or in ERROR);
 * - `Reset`: the device was reset to RUNNING, aborting `abortedArc` if one was in flight.
 */
export type SimEvent =
  | (EventBase & { readonly _tag: "ArcStarted"; readonly arc: Arc; readonly nth: number })
  | (EventBase & { readonly _tag: "ArcCompleted"; readonly arc: Arc })
  | (EventBase & { readonly _tag: "ArcFailed"; readonly arc: Arc; readonly code: ErrorCode; readonly reason: string })
  | (EventBase & { readonly _tag: "ArcInterrupted"; readonly arc: Arc })
  | (EventBase & { readonly _tag: "Reset"; readonly from: State; readonly abortedArc?: Arc })

/** A callback told of every event of a device, synchronously, as it happens. */
export type SimObserver = (event: SimEvent) => void
