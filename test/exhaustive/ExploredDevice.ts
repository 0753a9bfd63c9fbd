import type { Device } from "@lockstep/device"
import { DeviceError, type SessionOperation } from "@lockstep/device"
import type { Arc, Flags, State } from "@lockstep/fsm"
import type { InvariantViolation, SimEvent } from "@lockstep/sim"
import { Effect, Result } from "effect"
import { directArcs, hasResumeSession, hasSavingSession, type ModelEdge, peerClass } from "../model/Model.js"

/**
 * Devices whose every arc ends as the explorer says, and a fabric that checks the invariant on
 * them at every event with the model's rule. They implement the `Device` port with nothing but the
 * uAPI's rules: one legal direct arc per request (anything else is rejected), the saving session
 * open in the saving states only, the resume session in RESUMING only, reset to RUNNING with bus
 * mastering off.
 *
 * How an arc ends is the explorer's choice when it lands (see {@link Landing}): it completes, or
 * fails leaving the device where it was, at its target or in ERROR, or hangs until its request is
 * interrupted (its timeout, or the transition's interruption), and then is cancelled or lands anyway
 * in its target or in ERROR: the uAPI leaves the state after a failed or interrupted request
 * unknown, and the caller must read it back.
 */

/** How an arc ends. */
export type Landing =
  | "lands"
  | "fails, stays"
  | "fails at target"
  | "fails into ERROR"
  | "hangs, cancelled"
  | "hangs, lands anyway"
  | "hangs, lands in ERROR"

/** Every way an arc may end other than landing: the fault kinds. */
export const faultKinds: ReadonlyArray<Landing> = [
  "fails, stays",
  "fails at target",
  "fails into ERROR",
  "hangs, cancelled",
  "hangs, lands anyway",
  "hangs, lands in ERROR"
]

/** An arc in flight, waiting for the explorer. */
export interface InFlight {
  readonly device: string
  readonly arc: Arc
  /** Set once the explorer made it hang: it now waits for its request to be interrupted. */
  hang: Landing | undefined
  readonly land: (how: Landing) => void
}

/** What one group of explored devices shares: the arcs in flight, the event log, the invariant's record. */
export class ExploredFabric {
  readonly inFlight: Array<InFlight> = []
  readonly log: Array<SimEvent> = []
  readonly listeners = new Set<(event: SimEvent) => void>()
  readonly violations: Array<InvariantViolation> = []
  readonly devices = new Map<string, ExploredDevice>()
  private readonly open = new Map<string, number>()

  constructor(
    private readonly edges: ReadonlyArray<ModelEdge>,
    private readonly now: () => number
  ) {}

  /** The classes a device may be in now: its state's, and its arc's target while one is in flight. */
  private classes(id: string): ReadonlySet<string> {
    const d = this.devices.get(id)
    if (d === undefined) return new Set()
    const own = d.quiet && peerClass[d.state] === "initiating" ? "quiesced" : peerClass[d.state]
    return new Set(d.arc === undefined ? [own] : [own, peerClass[d.arc.to]])
  }

  /** A device changed: log it, and check every edge it is an end of (DESIGN.md's invariant). */
  changed(event: SimEvent): void {
    this.log.push(event)
    for (const listener of this.listeners) listener(event)
    for (const [a, b] of this.edges) {
      if (a !== event.device && b !== event.device) continue
      const key = `${a}>${b}`
      const broken = this.classes(a).has("initiating") && this.classes(b).has("halted")
      const at = this.open.get(key)
      if (broken && at === undefined) {
        this.open.set(key, this.violations.length)
        this.violations.push({
          edge: { initiator: a, target: b },
          at: this.now(),
          initiator: this.devices.get(a)?.status() ?? { state: "ERROR" },
          target: this.devices.get(b)?.status() ?? { state: "ERROR" },
          cause: { device: event.device, event: event._tag }
        })
      } else if (!broken && at !== undefined) {
        this.open.delete(key)
        const v = this.violations[at]
        if (v !== undefined) this.violations[at] = { ...v, endedAt: this.now() }
      }
    }
  }
}

/** One explored device. */
export class ExploredDevice {
  state: State
  arc: Arc | undefined = undefined
  /** Reset: bus mastering off until an arc into an initiating state. */
  quiet = false
  private epoch = 0
  private arcs = 0
  readonly port: Device

  constructor(
    readonly id: string,
    readonly kind: Device["kind"],
    readonly flags: Flags,
    start: State,
    private readonly fabric: ExploredFabric,
    private readonly now: () => number
  ) {
    this.state = start
    fabric.devices.set(id, this)
    this.port = {
      id,
      kind,
      flags,
      getState: Effect.sync(() => this.state),
      setState: (to) => this.setState(to),
      read: () =>
        Effect.suspend(() =>
          hasSavingSession(this.state) ? Effect.succeed({ _tag: "End" as const }) : this.sessionFailed("read")
        ),
      write: () => Effect.suspend(() => (hasResumeSession(this.state) ? Effect.void : this.sessionFailed("write"))),
      precopyInfo: Effect.suspend(() =>
        this.state === "PRE_COPY" || this.state === "PRE_COPY_P2P"
          ? Effect.succeed({ initialBytes: 0, dirtyBytes: 0 })
          : this.sessionFailed("precopyInfo")
      ),
      stopCopyLength: Effect.succeed(0),
      reset: Effect.sync(() => this.reset())
    }
  }

  status(): { readonly state: State; readonly inFlight?: Arc } {
    return this.arc === undefined ? { state: this.state } : { state: this.state, inFlight: this.arc }
  }

  private sessionFailed(operation: SessionOperation) {
    return Effect.fail(
      DeviceError.sessionFailed({
        device: this.id,
        operation,
        code: "EINVAL",
        reason: `no session in ${this.state}`,
        state: this.state
      })
    )
  }

  private emit(event: SimEvent): void {
    this.fabric.changed(event)
  }

  private base() {
    return { device: this.id, at: this.now(), ...this.status() }
  }

  private setState(to: State): Effect.Effect<void, DeviceError> {
    return Effect.suspend((): Effect.Effect<void, DeviceError> => {
      const arc: Arc = { from: this.state, to }
      if (this.arc !== undefined)
        return Effect.fail(
          DeviceError.arcRejected({ device: this.id, arc, code: "EBUSY", reason: "an arc is in flight" })
        )
      if (!directArcs(this.flags).some((a) => a.from === arc.from && a.to === to))
        return Effect.fail(
          DeviceError.arcRejected({
            device: this.id,
            arc,
            code: "EINVAL",
            reason: `${arc.from} → ${to} is not a direct arc`
          })
        )
      this.arc = arc
      this.arcs++
      if (peerClass[to] === "initiating") this.quiet = false
      this.emit({ _tag: "ArcStarted", ...this.base(), arc, nth: this.arcs })
      const epoch = this.epoch
      return Effect.callback<void, DeviceError>((resume) => {
        const pending: InFlight = {
          device: this.id,
          arc,
          hang: undefined,
          land: (how) => {
            const result = this.land(arc, epoch, how)
            if (result !== undefined) resume(Result.isSuccess(result) ? Effect.void : Effect.fail(result.failure))
          }
        }
        this.fabric.inFlight.push(pending)
        // The request is interrupted (its timeout, or the transition's interruption).
        return Effect.sync(() => {
          this.forget(pending)
          if (epoch !== this.epoch || this.arc === undefined) return
          this.arc = undefined
          if (pending.hang === "hangs, lands anyway") this.state = arc.to
          else if (pending.hang === "hangs, lands in ERROR") this.state = "ERROR"
          this.emit({ _tag: "ArcInterrupted", ...this.base(), arc })
        })
      })
    })
  }

  private forget(pending: InFlight): void {
    const i = this.fabric.inFlight.indexOf(pending)
    if (i >= 0) this.fabric.inFlight.splice(i, 1)
  }

  /** Ends the arc as told; answers its result, or undefined while it hangs. */
  private land(arc: Arc, epoch: number, how: Landing): Result.Result<void, DeviceError> | undefined {
    const pending = this.fabric.inFlight.find((p) => p.device === this.id)
    if (how.startsWith("hangs")) {
      if (pending !== undefined) pending.hang = how
      return undefined
    }
    if (pending !== undefined) this.forget(pending)
    if (epoch !== this.epoch)
      return Result.fail(
        DeviceError.arcFailed({
          device: this.id,
          arc,
          code: "ECANCELED",
          reason: "reset during the arc",
          stateAfter: this.state
        })
      )
    this.arc = undefined
    if (how === "lands") {
      this.state = arc.to
      this.emit({ _tag: "ArcCompleted", ...this.base(), arc })
      return Result.void
    }
    this.state = how === "fails, stays" ? arc.from : how === "fails at target" ? arc.to : "ERROR"
    this.emit({ _tag: "ArcFailed", ...this.base(), arc, code: "EIO", reason: "injected arc failure" })
    return Result.fail(
      DeviceError.arcFailed({ device: this.id, arc, code: "EIO", reason: how, stateAfter: this.state })
    )
  }

  private reset(): void {
    const from = this.state
    const aborted = this.arc
    const pending = this.fabric.inFlight.find((p) => p.device === this.id)
    this.epoch++
    this.arc = undefined
    // An arc in flight across a reset was aborted: its request fails (ECANCELED).
    pending?.land("lands")
    this.state = "RUNNING"
    this.quiet = true
    this.emit(
      aborted === undefined
        ? { _tag: "Reset", ...this.base(), from }
        : { _tag: "Reset", ...this.base(), from, abortedArc: aborted }
    )
  }
}
