import {
  type Device,
  DeviceError,
  type DeviceKind,
  type ErrorCode,
  type PrecopyInfo,
  type ReadResult,
  type SessionOperation
} from "@lockstep/device"
import { type Arc, flagNames, isArc, isSaving, type State, stateClass } from "@lockstep/fsm"
import { Clock, Effect, Result, Schema } from "effect"
import { type ArcFault, FaultDeck } from "./FaultPlan.js"
import { compare, digest, invalidatePage, type Memory, type MemoryComparison, makeMemory } from "./Memory.js"
import { scribbleWords, streamSeed } from "./Prng.js"
import { headerLength, ResumeSession, recordHeaderLength, SavingSession, streamLength } from "./SaveStream.js"
import { arcLatency, type ResolvedSimDeviceConfig, resolveSimDeviceConfig, SimDeviceConfig } from "./SimDeviceConfig.js"
import { InvalidSimConfig } from "./SimError.js"
import type { DeviceStatus, SimEvent, SimObserver } from "./SimEvent.js"

/**
 * How a fabric hooks into a device it holds. The device calls it synchronously, so that the
 * fabric sees every change at the instant it happens, with the statuses that held before.
 */
export interface FabricLink {
  /** Land every P2P write due on the device's edges up to `now`: its status is about to change. */
  readonly settle: (now: number) => void
  /** Land every P2P write due into the device up to `now`: its data is about to be touched. */
  readonly settleIncoming: (now: number) => void
  /** The device's status changed as `event` says: re-check its edges. */
  readonly changed: (event: SimEvent) => void
}

/** Arc accepted and in flight: what `finish` needs to land it. */
interface StartedArc {
  readonly arc: Arc
  readonly epoch: number
  /** The 1-based count of the device's arcs. */
  readonly nth: number
  readonly latencyMs: number
  readonly fault: ArcFault | undefined
}

const rejectReason = (flags: number, from: State, to: State): string => {
  if (from === to) return `the device is already in ${to}; a no-op is not an arc`
  if (from === "ERROR") return "the device is in ERROR; only a reset leaves it"
  if (to === "ERROR") return "ERROR cannot be requested"
  return `${from} → ${to} is not a direct arc for flags [${flagNames(flags).join(", ")}]`
}

/**
 * The simulated device itself: plain synchronous state, changed only inside `Effect.sync`
 * blocks of the `SimDevice` methods (each block is atomic: fibers interleave only between them).
 *
 * Time is lazy: nothing ticks. Every operation first brings the device (its own dirtying) and,
 * through the fabric, its edges up to the current virtual time, then acts.
 */
export class SimEngine {
  /** The state the device is in (during an arc: the arc's original state). */
  state: State = "RUNNING"
  /** The arc in flight, if any. */
  inFlight: Arc | undefined = undefined
  /**
   * Set by a reset, cleared by an arc into an initiating state. A reset (a PCI function-level
   * reset) clears the Bus Master Enable bit of the command register: the function cannot issue
   * DMA, P2P included, until its driver enables it again, which for a migration only happens when
   * the device is made to run. The fabric therefore does not count a reset device as initiating.
   */
  busMasterOff = false
  /** The device state that migrates. */
  readonly memory: Memory
  /** The fabric holding the device, if any. */
  link: FabricLink | undefined = undefined
  /** Bumped by every reset, so that an arc in flight across a reset knows it was aborted. */
  private epoch = 0
  private arcs = 0
  private reads = 0
  private writes = 0
  private savingSessions = 0
  /** The `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2` opt-in was taken: pre-copy info may report REINIT. */
  private precopyInfoV2 = false
  private precopyQueries = 0
  /** A re-initialisation is due: the next pre-copy info query performs and reports it. */
  private reinitDue = false
  private saving: SavingSession | undefined = undefined
  private resume: ResumeSession | undefined = undefined
  private readonly deck: FaultDeck
  private readonly observers: Array<SimObserver> = []
  /** The virtual time up to which the device's own dirtying is applied. */
  private settledTo: number
  private initiatingMs = 0
  private pagesDirtied = 0
  private rng: number

  constructor(
    readonly id: string,
    readonly config: ResolvedSimDeviceConfig,
    now: number
  ) {
    this.memory = makeMemory(config.stateSize, config.pageSize, streamSeed(config.seed, id, "memory"))
    this.rng = streamSeed(config.seed, id, "dirty")
    this.deck = new FaultDeck(config.faults)
    this.settledTo = now
  }

  get kind(): DeviceKind {
    return this.config.kind
  }

  /** Pages P2P writes may land in. */
  get pageCount(): number {
    return this.memory.pageCount
  }

  /** State and arc in flight, as a value. */
  status(): DeviceStatus {
    return this.inFlight === undefined ? { state: this.state } : { state: this.state, inFlight: this.inFlight }
  }

  /** Adds an observer; answers the function that removes it. */
  observe(observer: SimObserver): () => void {
    this.observers.push(observer)
    return () => {
      const i = this.observers.indexOf(observer)
      if (i >= 0) this.observers.splice(i, 1)
    }
  }

  /** A tracked change: the page is dirty for the saving session, if any. */
  private readonly track = (word: number): void => {
    const page = Math.floor((word * 4) / this.memory.pageSize)
    invalidatePage(this.memory, page)
    this.saving?.markDirty(page)
  }

  /** An untracked change, into a halted device: remembered as foreign. */
  private readonly taint = (word: number, flip: number): void => {
    invalidatePage(this.memory, Math.floor((word * 4) / this.memory.pageSize))
    this.memory.foreign.record(word, flip)
  }

  /**
   * `count` P2P writes from a peer, drawn from the stream at `counter`: each changes one word
   * of memory. A device that is not halted tracks the page as dirty; a halted one does not
   * (it is stopped and expects no change), so a page it already sent stays stale at the
   * destination, and the change is remembered as foreign (see `ForeignWrites`): that is how
   * corruption becomes visible. Answers the stream's next counter.
   */
  peerWrites(counter: number, count: number, halted: boolean): number {
    return scribbleWords(this.memory.words, counter, count, halted ? this.taint : this.track)
  }

  /**
   * The device's own dirtying up to `now`: `dirtyBytesPerSecond` while initiating, one page per
   * `pageSize` bytes, at most every page's worth per settlement. Counted from the total time
   * spent initiating, so (below that cap) the number of pages dirtied by an instant does not
   * depend on how often the device was looked at.
   */
  private advance(now: number): void {
    const dt = now - this.settledTo
    if (dt <= 0) return
    this.settledTo = now
    const rate = this.config.dirtyBytesPerSecond
    if (rate === 0 || stateClass(this.state) !== "initiating") return
    this.initiatingMs += dt
    const due = Math.floor((this.initiatingMs * rate) / 1000 / this.config.pageSize)
    const pages = Math.min(due - this.pagesDirtied, this.memory.pageCount)
    this.pagesDirtied = due
    this.rng = scribbleWords(this.memory.words, this.rng, pages, this.track)
  }

  /** Before a status change: everything up to `now` happens with the old status. */
  private sync(now: number): void {
    this.advance(now)
    this.link?.settle(now)
  }

  /** Before touching data: own dirtying and incoming writes up to `now`. */
  syncIncoming(now: number): void {
    this.advance(now)
    this.link?.settleIncoming(now)
  }

  /** Whether anyone hears the device's events: if not, none is built (issue 17: it costs per arc). */
  private get heard(): boolean {
    return this.link !== undefined || this.observers.length > 0
  }

  private emit(event: SimEvent): void {
    this.link?.changed(event)
    for (const observer of this.observers) observer(event)
  }

  /** Moves to `next`, opening and closing data sessions as the uAPI says. */
  private enter(next: State): void {
    const prev = this.state
    if (isSaving(prev) && !isSaving(next)) this.saving = undefined
    if (!isSaving(prev) && isSaving(next)) {
      this.savingSessions++
      const faults = this.deck.session(this.savingSessions, headerLength + recordHeaderLength)
      this.saving = new SavingSession(this.memory, this.config.precopyInitialBytes, faults)
    }
    if (prev === "RESUMING" && next !== "RESUMING") this.resume = undefined
    if (prev === "STOP" && next === "RESUMING") this.resume = new ResumeSession(this.memory)
    this.state = next
  }

  /** Accepts `setState(to)` if it is one legal arc and none is in flight; the arc is then in flight. */
  beginArc(to: State, now: number): Result.Result<StartedArc, DeviceError> {
    const arc: Arc = { from: this.state, to }
    if (this.inFlight !== undefined) {
      const busy = this.inFlight
      return Result.fail(
        DeviceError.arcRejected({
          device: this.id,
          arc,
          code: "EBUSY",
          reason: `arc ${busy.from} → ${busy.to} is in flight`
        })
      )
    }
    if (!isArc(this.config.flags, arc.from, to)) {
      return Result.fail(
        DeviceError.arcRejected({
          device: this.id,
          arc,
          code: "EINVAL",
          reason: rejectReason(this.config.flags, arc.from, to)
        })
      )
    }
    this.sync(now)
    const nth = ++this.arcs
    const fault = this.deck.arc(arc, nth)
    this.inFlight = arc
    // Only an arc into an initiating state has a driver enable bus mastering again.
    if (stateClass(arc.to) === "initiating") this.busMasterOff = false
    if (this.heard) this.emit({ _tag: "ArcStarted", device: this.id, at: now, ...this.status(), arc, nth })
    return Result.succeed({ arc, epoch: this.epoch, nth, latencyMs: arcLatency(this.config, arc), fault })
  }

  /** Lands an arc once its latency has passed: in its target state, or failed as its fault or the resume data say. */
  finishArc(started: StartedArc, now: number): Result.Result<void, DeviceError> {
    const { arc, fault } = started
    const failed = (code: ErrorCode, reason: string): Result.Result<void, DeviceError> => {
      this.emit({ _tag: "ArcFailed", device: this.id, at: now, ...this.status(), arc, code, reason })
      return Result.fail(DeviceError.arcFailed({ device: this.id, arc, code, reason, stateAfter: this.state }))
    }
    if (started.epoch !== this.epoch) {
      return Result.fail(
        DeviceError.arcFailed({
          device: this.id,
          arc,
          code: "ECANCELED",
          reason: "the device was reset while the arc was in flight",
          stateAfter: this.state
        })
      )
    }
    this.sync(now)
    this.inFlight = undefined
    if (fault?._tag === "Fail") {
      this.enter(fault.leaveIn === "original" ? arc.from : fault.leaveIn === "target" ? arc.to : "ERROR")
      return failed(fault.code, "injected arc failure")
    }
    if (arc.from === "RESUMING" && arc.to === "STOP") {
      const problem = this.resume === undefined ? "no resume session" : this.resume.verdict()
      if (problem !== undefined) return failed("EINVAL", `resume data rejected: ${problem}`)
    }
    this.enter(arc.to)
    if (this.heard) this.emit({ _tag: "ArcCompleted", device: this.id, at: now, ...this.status(), arc })
    return Result.succeed(undefined)
  }

  /** The arc's fiber was interrupted: the arc never happened, unless a `LandOnInterrupt` fault says it landed anyway. */
  interruptArc(started: StartedArc, now: number): void {
    if (started.epoch !== this.epoch) return
    this.sync(now)
    this.inFlight = undefined
    const landed = this.deck.interrupted(started.arc, started.nth)
    if (landed !== undefined) {
      this.enter(landed === "target" ? started.arc.to : "ERROR")
    }
    this.emit({ _tag: "ArcInterrupted", device: this.id, at: now, ...this.status(), arc: started.arc })
  }

  /** Device reset: RUNNING, no session, no arc in flight. */
  reset(now: number): void {
    this.sync(now)
    const from = this.state
    const abortedArc = this.inFlight
    this.inFlight = undefined
    this.epoch++
    this.saving = undefined
    this.resume = undefined
    this.state = "RUNNING"
    this.busMasterOff = true
    const base = { _tag: "Reset", device: this.id, at: now, state: this.state, from } as const
    this.emit(abortedArc === undefined ? base : { ...base, abortedArc })
  }

  private sessionFailed(
    operation: SessionOperation,
    code: ErrorCode,
    reason: string
  ): Result.Result<never, DeviceError> {
    return Result.fail(DeviceError.sessionFailed({ device: this.id, operation, code, reason, state: this.state }))
  }

  /** `VFIO_DEVICE_FEATURE` SET `MIG_PRECOPY_INFOv2`: taken if the configuration says the device has it. */
  enablePrecopyInfoV2(): boolean {
    if (this.config.precopyInfoV2) this.precopyInfoV2 = true
    return this.precopyInfoV2
  }

  /**
   * Makes new initial data due (what a driver does when the device is reconfigured during
   * pre-copy); the next pre-copy info query reports REINIT. Only after the v2 opt-in: answers
   * whether it was taken.
   */
  reinitialise(): boolean {
    if (this.precopyInfoV2) this.reinitDue = true
    return this.precopyInfoV2
  }

  /** `VFIO_MIG_GET_PRECOPY_INFO`; with the v2 opt-in, REINIT at the configured query or after `reinitialise`. */
  precopyInfo(now: number): Result.Result<PrecopyInfo, DeviceError> {
    if ((this.state !== "PRE_COPY" && this.state !== "PRE_COPY_P2P") || this.saving === undefined) {
      return this.sessionFailed("precopyInfo", "EINVAL", `no pre-copy session in ${this.state}`)
    }
    this.syncIncoming(now)
    const nth = ++this.precopyQueries
    if (this.precopyInfoV2 && (this.reinitDue || nth === this.config.reinitAtQuery)) {
      this.reinitDue = false
      this.saving.reinitialise()
      return Result.succeed({ ...this.saving.precopyInfo(), reinit: true })
    }
    return Result.succeed(this.saving.precopyInfo())
  }

  /** A read of the saving session. */
  read(maxBytes: number, now: number, into?: Uint8Array): Result.Result<ReadResult, DeviceError> {
    if (this.saving === undefined) return this.sessionFailed("read", "EINVAL", `no saving session in ${this.state}`)
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      return this.sessionFailed("read", "EINVAL", `cannot read ${maxBytes} bytes`)
    }
    const code = this.deck.access("FailRead", ++this.reads)
    if (code !== undefined) return this.sessionFailed("read", code, "injected read failure")
    this.syncIncoming(now)
    const stopCopy = this.state === "STOP_COPY"
    const data = this.saving.read(maxBytes, stopCopy, into)
    return Result.succeed(
      data !== undefined ? { _tag: "Chunk", data } : stopCopy ? { _tag: "End" } : { _tag: "NoData" }
    )
  }

  /** A write into the resume session. */
  write(data: Uint8Array, now: number): Result.Result<void, DeviceError> {
    if (this.resume === undefined) return this.sessionFailed("write", "EINVAL", `no resume session in ${this.state}`)
    const code = this.deck.access("FailWrite", ++this.writes)
    if (code !== undefined) return this.sessionFailed("write", code, "injected write failure")
    this.syncIncoming(now)
    const overflowed = this.resume.overflowed
    this.resume.write(data)
    if (!overflowed && this.resume.overflowed)
      return this.sessionFailed(
        "write",
        "ENOMEM",
        "the stream declares more state than this device holds (a kernel driver refuses such a write, as mtty does)"
      )
    return Result.succeed(undefined)
  }

  /** What STOP_COPY would send from here: the rest of the open session, or a whole stream. */
  stopCopyLength(now: number): number {
    this.syncIncoming(now)
    return this.saving === undefined ? streamLength(this.memory) : this.saving.stopCopyLength()
  }
}

/** Brands the devices made here, so that no other object passes for one. */
const SimDeviceTypeId: unique symbol = Symbol.for("@lockstep/sim/SimDevice")

/**
 * A simulated device: implements the `Device` port exactly (see `@lockstep/device`) on
 * virtual time, plus what tests and the fabric need to look inside.
 *
 * Choices the uAPI leaves open, made here:
 * - `setState` during another arc of the same device is rejected (`EBUSY`); data operations
 *   during an arc act in the arc's original state, which is also what `getState` reports.
 * - An interrupted arc leaves the device in its original state, nothing in flight (unless a
 *   `LandOnInterrupt` fault lands it in its target or in ERROR: the uAPI leaves the state after
 *   an interrupted request unknown).
 * - A reset is instant; it aborts an arc in flight, which then fails with `ECANCELED`.
 * - RESUMING→STOP on bad or incomplete data fails with `EINVAL` and leaves the device in
 *   RESUMING with its resume session open: the uAPI's way out is a reset (writing the missing
 *   rest of a truncated stream and retrying also works). A stream that declares more state
 *   than the device holds fails the `write` that brings its header, with `ENOMEM`, as the
 *   kernel's mtty driver does (its resume data is size-checked as it is written); other bad
 *   data never fails a `write`.
 * - A reset does not rewrite memory (so a failed resume can still be inspected).
 * - A failed read or write consumes nothing; the session carries on.
 */
export interface SimDevice extends Device {
  readonly [SimDeviceTypeId]: typeof SimDeviceTypeId
  /** The configuration, defaults applied. */
  readonly config: ResolvedSimDeviceConfig
  /** The state and the arc in flight, if any. */
  readonly status: Effect.Effect<DeviceStatus>
  /**
   * Calls `observer` synchronously on every event of the device (arc start and end, reset),
   * until the returned function is called.
   */
  readonly observe: (observer: SimObserver) => () => void
  /**
   * Makes new initial data due, as a driver does when the device is reconfigured in pre-copy:
   * the next pre-copy info query reports REINIT. Only after the v2 opt-in (`precopyInfoV2`);
   * answers whether it was taken.
   */
  readonly reinitialise: Effect.Effect<boolean>
}

const engines = new WeakMap<Device, SimEngine>()

/** The engine of a device made by `makeSimDevice`, if it is one. */
export const engineOf = (device: Device): SimEngine | undefined => engines.get(device)

const withEngine = <A>(device: SimDevice, f: (engine: SimEngine) => Effect.Effect<A>): Effect.Effect<A> => {
  const engine = engineOf(device)
  return engine === undefined ? Effect.die(new Error(`${device.id} is not a simulated device`)) : f(engine)
}

/** Runs `f` atomically at the current virtual time. */
const now = <A, E>(f: (now: number) => Result.Result<A, E>): Effect.Effect<A, E> =>
  Effect.clockWith((clock) => Effect.suspend(() => Effect.fromResult(f(clock.currentTimeMillisUnsafe()))))

const makeDevice = (engine: SimEngine): SimDevice => {
  // Untraced, and no generator: a span, a stack capture or a few more Effect steps per arc cost
  // more than a simulated arc (issue 17). Masked, so that an arc begun always either lands or is
  // interrupted through `interruptArc`.
  const setState = (to: State) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.clockWith((clock) =>
        Effect.suspend((): Effect.Effect<void, DeviceError> => {
          const begun = engine.beginArc(to, clock.currentTimeMillisUnsafe())
          if (Result.isFailure(begun)) return Effect.fail(begun.failure)
          const started = begun.success
          const land = () => engine.finishArc(started, clock.currentTimeMillisUnsafe())
          // A zero-latency arc lands at once, as its latency says: no sleep, so no scheduler hop.
          if (started.fault?._tag !== "Hang" && started.latencyMs <= 0) return Effect.fromResult(land())
          const wait = started.fault?._tag === "Hang" ? Effect.never : Effect.sleep(started.latencyMs)
          return restore(wait).pipe(
            Effect.onInterrupt(() => Effect.sync(() => engine.interruptArc(started, clock.currentTimeMillisUnsafe()))),
            Effect.flatMap(() => Effect.fromResult(land()))
          )
        })
      )
    )
  return {
    [SimDeviceTypeId]: SimDeviceTypeId,
    id: engine.id,
    kind: engine.config.kind,
    flags: engine.config.flags,
    config: engine.config,
    getState: Effect.sync(() => engine.state),
    status: Effect.sync(() => engine.status()),
    setState,
    read: Effect.fn("SimDevice.read")((maxBytes: number, into?: Uint8Array) =>
      now((t) => engine.read(maxBytes, t, into))
    ),
    write: Effect.fn("SimDevice.write")((data: Uint8Array) => now((t) => engine.write(data, t))),
    precopyInfo: now((t) => engine.precopyInfo(t)).pipe(Effect.withSpan("SimDevice.precopyInfo")),
    stopCopyLength: now((t) => Result.succeed(engine.stopCopyLength(t))).pipe(
      Effect.withSpan("SimDevice.stopCopyLength")
    ),
    reset: now((t) => Result.succeed(engine.reset(t))).pipe(Effect.withSpan("SimDevice.reset")),
    enablePrecopyInfoV2: Effect.sync(() => engine.enablePrecopyInfoV2()).pipe(
      Effect.withSpan("SimDevice.enablePrecopyInfoV2")
    ),
    p2pQuiesceIsStop: engine.config.p2pQuiesceIsStop,
    reinitialise: Effect.sync(() => engine.reinitialise()),
    observe: (observer) => engine.observe(observer)
  }
}

const decodeConfig = Schema.decodeUnknownEffect(SimDeviceConfig)

/**
 * A simulated device named `id`, in RUNNING, its memory filled from (seed, id). The
 * configuration is checked with the `SimDeviceConfig` codec.
 */
export const makeSimDevice = Effect.fn("SimDevice.make")(function* (id: string, config: SimDeviceConfig = {}) {
  const decoded = yield* decodeConfig(config).pipe(
    Effect.mapError((e) => new InvalidSimConfig({ device: id, reason: e.message }))
  )
  const clock = yield* Clock.Clock
  const engine = new SimEngine(id, resolveSimDeviceConfig(decoded), clock.currentTimeMillisUnsafe())
  const device = makeDevice(engine)
  engines.set(device, engine)
  return device
})

/**
 * Compares two simulated devices' memories page by page, at the current virtual time
 * (pending dirtying and P2P writes landed first): after a migration, a resumed destination
 * must be `Identical` to its source.
 */
export const compareMemory = (a: SimDevice, b: SimDevice): Effect.Effect<MemoryComparison> =>
  withEngine(a, (ea) =>
    withEngine(b, (eb) =>
      now((t) => {
        ea.syncIncoming(t)
        eb.syncIncoming(t)
        return Result.succeed(compare(ea.memory, eb.memory))
      })
    )
  )

/** A 64-bit digest (16 hex digits) of a simulated device's memory at the current virtual time. */
export const memoryDigest = (device: SimDevice): Effect.Effect<string> =>
  withEngine(device, (engine) =>
    now((t) => {
      engine.syncIncoming(t)
      return Result.succeed(digest(engine.memory))
    })
  )
