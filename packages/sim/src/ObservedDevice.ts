import type { Device, DeviceError, DeviceKind } from "@lockstep/device"
import { type Arc, type State, stateClass } from "@lockstep/fsm"
import { Cause, Clock, Effect, Exit, Option } from "effect"
import type { FabricLink } from "./SimDevice.js"
import type { DeviceStatus, SimEvent } from "./SimEvent.js"

/**
 * A group member of any backend (a vfio-user device, a VMM's own) as a fabric sees it: its
 * status, learnt from the calls made through the {@link ObservedDevice} that wraps it. It has no
 * memory of its own here: P2P writes into it are counted (and recorded as corrupting if it may
 * be halted) but change nothing.
 */
export class ObservedMember {
  /** The state the device is in (during an arc: the arc's original state). */
  state: State
  inFlight: Arc | undefined = undefined
  /** Set by a reset, as for a simulated device: a reset function does not DMA until it runs again. */
  busMasterOff = false
  /** P2P writes land somewhere: one page that stands for the device's memory. */
  readonly pageCount = 1
  link: FabricLink | undefined = undefined

  constructor(
    readonly id: string,
    readonly kind: DeviceKind,
    state: State
  ) {
    this.state = state
  }

  status(): DeviceStatus {
    return this.inFlight === undefined ? { state: this.state } : { state: this.state, inFlight: this.inFlight }
  }

  /** Nothing to write into: the stream of writes moves on unchanged. */
  peerWrites(counter: number): number {
    return counter
  }

  syncIncoming(now: number): void {
    this.link?.settleIncoming(now)
  }

  private emit(event: SimEvent): void {
    this.link?.changed(event)
  }

  beginArc(arc: Arc, now: number): void {
    this.link?.settle(now)
    this.inFlight = arc
    if (stateClass(arc.to) === "initiating") this.busMasterOff = false
    this.emit({ _tag: "ArcStarted", device: this.id, at: now, ...this.status(), arc, nth: 0 })
  }

  /** The arc landed in its target state. */
  completeArc(arc: Arc, now: number): void {
    this.link?.settle(now)
    this.inFlight = undefined
    this.state = arc.to
    this.emit({ _tag: "ArcCompleted", device: this.id, at: now, ...this.status(), arc })
  }

  /** The arc failed; `state` is where the device was found afterwards. */
  failArc(arc: Arc, state: State, error: DeviceError, now: number): void {
    this.link?.settle(now)
    this.inFlight = undefined
    this.state = state
    const code = "code" in error.reason ? error.reason.code : "EIO"
    this.emit({ _tag: "ArcFailed", device: this.id, at: now, ...this.status(), arc, code, reason: error.message })
  }

  /**
   * The arc failed and the device cannot be asked where it is (unreachable): it may be in either
   * of the arc's states, so the arc stays in flight for the fabric until the device is heard from.
   */
  loseArc(arc: Arc, error: DeviceError, now: number): void {
    this.link?.settle(now)
    this.inFlight = arc
    this.state = arc.from
    const code = "code" in error.reason ? error.reason.code : "EIO"
    this.emit({ _tag: "ArcFailed", device: this.id, at: now, ...this.status(), arc, code, reason: error.message })
  }

  /** The arc did not happen (interrupted, or rejected before it began): the device is where it was. */
  endArc(arc: Arc, now: number): void {
    this.link?.settle(now)
    this.inFlight = undefined
    this.emit({ _tag: "ArcInterrupted", device: this.id, at: now, ...this.status(), arc })
  }

  /**
   * A reset, with the state read back after it (a real server may not have gone to RUNNING, or
   * refused). Only a reset that succeeded counts as clearing bus mastering.
   */
  reset(state: State, done: boolean, now: number): void {
    this.link?.settle(now)
    const from = this.state
    this.state = state
    this.inFlight = undefined
    if (done) this.busMasterOff = true
    this.emit({ _tag: "Reset", device: this.id, at: now, state, from })
  }
}

const ObservedTypeId: unique symbol = Symbol.for("@lockstep/sim/ObservedDevice")

/**
 * A device whose transitions a fabric records, whatever its backend: every call passes through
 * to the wrapped device, and each arc's begin and end and each reset are reported to the fabric
 * the member joins. Drive the group through these wrappers, not the devices they wrap.
 */
export interface ObservedDevice extends Device {
  readonly [ObservedTypeId]: typeof ObservedTypeId
  /** The wrapped device. */
  readonly observed: Device
}

const members = new WeakMap<Device, ObservedMember>()

/** The member behind a device made by `observeDevice`, if it is one. */
export const observedMemberOf = (device: Device): ObservedMember | undefined => members.get(device)

/** The state after a failure: the one the error carries, else read back; unknown counts as ERROR. */
/** Where a failed arc left the device, or `undefined` when the device cannot be asked. */
const stateAfter = (device: Device, error: DeviceError): Effect.Effect<State | undefined> => {
  const reason = error.reason
  if (reason._tag === "ArcFailed") return Effect.succeed(reason.stateAfter)
  if (reason._tag === "SessionFailed") return Effect.succeed(reason.state)
  return device.getState.pipe(Effect.catch(() => Effect.succeed(undefined)))
}

/**
 * Wraps `device` so that a fabric can record its transitions. Its state is read once now (an
 * unreadable device counts as ERROR, which may DMA); from then on the wrapper follows the calls
 * made through it: an arc is in flight from the call to its answer, a failed arc leaves the
 * device where the error or a read-back says, a reset where a read-back says.
 */
export const observeDevice = Effect.fn("Sim.observeDevice")(function* (device: Device) {
  const initial = yield* device.getState.pipe(Effect.catch(() => Effect.succeed<State>("ERROR")))
  const member = new ObservedMember(device.id, device.kind, initial)
  const time = Clock.currentTimeMillis

  /** Records how an arc ended, whatever way its call ended. */
  const settle = (arc: Arc, exit: Exit.Exit<void, DeviceError>): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (Exit.isSuccess(exit)) return member.completeArc(arc, yield* time)
      const error = Cause.findErrorOption(exit.cause)
      // Interrupted, a defect, or a rejected arc (which never started): the device is where it was.
      if (Option.isNone(error) || error.value.reason._tag === "ArcRejected") return member.endArc(arc, yield* time)
      const state = yield* stateAfter(device, error.value)
      if (state === undefined) member.loseArc(arc, error.value, yield* time)
      else member.failArc(arc, state, error.value, yield* time)
    })

  const setState = (to: State): Effect.Effect<void, DeviceError> =>
    Effect.suspend(() => {
      const arc: Arc = { from: member.state, to }
      return time.pipe(
        Effect.flatMap((now) => Effect.sync(() => member.beginArc(arc, now))),
        Effect.andThen(device.setState(to)),
        Effect.onExit((exit) => settle(arc, exit))
      )
    })

  const reset: Effect.Effect<void, DeviceError> = device.reset.pipe(
    Effect.onExit((exit) =>
      Effect.gen(function* () {
        const state = yield* device.getState.pipe(Effect.catch(() => Effect.succeed<State>("ERROR")))
        member.reset(state, Exit.isSuccess(exit), yield* time)
      })
    )
  )

  const wrapped: ObservedDevice = {
    [ObservedTypeId]: ObservedTypeId,
    observed: device,
    id: device.id,
    kind: device.kind,
    flags: device.flags,
    getState: device.getState,
    setState,
    read: device.read,
    write: device.write,
    precopyInfo: device.precopyInfo,
    stopCopyLength: device.stopCopyLength,
    ...(device.stopCopyLengthEstimate === undefined ? {} : { stopCopyLengthEstimate: device.stopCopyLengthEstimate }),
    ...(device.enablePrecopyInfoV2 === undefined ? {} : { enablePrecopyInfoV2: device.enablePrecopyInfoV2 }),
    ...(device.p2pQuiesceIsStop === undefined ? {} : { p2pQuiesceIsStop: device.p2pQuiesceIsStop }),
    reset
  }
  members.set(wrapped, member)
  return wrapped
})
