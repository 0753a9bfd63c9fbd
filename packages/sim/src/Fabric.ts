import { type Device, type DeviceKind, kindMayDoP2P } from "@lockstep/device"
import { type Arc, type State, stateClass } from "@lockstep/fsm"
import { Clock, Effect } from "effect"
import {
  type CorruptingWrite,
  InvariantViolated,
  type InvariantViolation,
  type P2PEdge,
  type ViolationCause
} from "./Invariant.js"
import { type ObservedDevice, observedMemberOf } from "./ObservedDevice.js"
import { mix32, streamSeed } from "./Prng.js"
import { engineOf, type FabricLink, type SimDevice } from "./SimDevice.js"
import { InvalidFabric } from "./SimError.js"
import type { DeviceStatus, SimEvent } from "./SimEvent.js"

/**
 * What the fabric needs of a device it holds: its status for the invariant, and a place for P2P
 * writes to land. A simulated device's engine is one; so is the member behind an
 * `ObservedDevice`, whose transitions are learnt from the calls made through it.
 */
export interface FabricMember {
  readonly id: string
  readonly kind: DeviceKind
  readonly state: State
  readonly inFlight: Arc | undefined
  /** A reset device does not initiate DMA until an arc into an initiating state. */
  readonly busMasterOff: boolean
  /** Pages a burst of P2P writes spreads over (at least one). */
  readonly pageCount: number
  link: FabricLink | undefined
  status(): DeviceStatus
  /** Lands `count` P2P writes drawn from the stream at `counter`; answers the stream's next counter. */
  peerWrites(counter: number, count: number, halted: boolean): number
  /** Lands everything due into the device up to `now`. */
  syncIncoming(now: number): void
}

/** What a fabric is built from; independent of any group file format. */
export interface FabricOptions {
  /** Simulated devices, and devices of other backends wrapped by `observeDevice`. */
  readonly devices: Iterable<SimDevice | ObservedDevice>
  readonly edges: Iterable<P2PEdge>
  /**
   * P2P writes per second an initiating initiator makes into each of its targets, unless an
   * edge sets its own rate. Default 1000.
   */
  readonly writesPerSecond?: number
  /** Seed of the write pattern. Default 0. */
  readonly seed?: number
}

/**
 * The DMA fabric of a group of simulated devices (and of devices of other backends observed
 * through `observeDevice`): it generates the P2P writes of every edge on virtual time and
 * checks the safety invariant at every status change of every device.
 *
 * - An initiator that may be initiating (RUNNING, PRE_COPY, ERROR, or an arc in flight from or
 *   to one of them) writes into each of its targets at the edge's rate. Writes are computed
 *   lazily, at each event of either end of the edge, from the virtual time elapsed since.
 * - A write into a target that may be halted changes its memory behind its back and is
 *   recorded as a corrupting write; into any other target, it dirties the page (as pre-copy
 *   would see it). At most one write per target page lands per edge and settlement.
 * - The invariant (for every edge a→b: not (b may be halted and a may be initiating)) is
 *   checked on the edges of the device that changed, at every arc start and end, failure,
 *   interruption and reset; every instant it is false opens a violation, recorded even if it
 *   lasts no time.
 *
 * Per event, work is proportional to the edges touching the device, and writes allocate
 * nothing.
 */
export interface Fabric {
  readonly devices: ReadonlyArray<SimDevice | ObservedDevice>
  readonly edges: ReadonlyArray<P2PEdge>
  /** Every violation so far, in the order they began. Empty in a correct run. */
  readonly violations: () => ReadonlyArray<InvariantViolation>
  /** Every interval in which writes landed in a possibly halted target. */
  readonly corruptingWrites: () => ReadonlyArray<CorruptingWrite>
  /** Every event of every device, in order: the run's log. */
  readonly trace: () => ReadonlyArray<SimEvent>
  /** How many P2P writes have landed so far (settled ones). */
  readonly writesLanded: () => number
  /** Lands every write due up to now on every edge. */
  readonly settle: Effect.Effect<void>
  /** Settles, then fails with `InvariantViolated` if any violation or corrupting write was seen. */
  readonly assertNoViolations: Effect.Effect<void, InvariantViolated>
  /** Unhooks the fabric from its devices (they may then join another fabric). */
  readonly detach: Effect.Effect<void>
}

const initiating = 1
const quiesced = 2
const halted = 4
const classBits = { initiating, quiesced, halted } as const
const bitsOf = (s: State): number => classBits[stateClass(s)]
const maskOf = (engine: FabricMember): number => {
  // A reset device has bus mastering off: RUNNING, but it cannot initiate DMA.
  const bits = bitsOf(engine.state)
  const own = engine.busMasterOff && bits === initiating ? quiesced : bits
  return own | (engine.inFlight === undefined ? 0 : bitsOf(engine.inFlight.to))
}

/** A violation still open keeps a mutable end; the log hands out snapshots. */
type OpenViolation = { -readonly [K in keyof InvariantViolation]: InvariantViolation[K] }

class FabricCore {
  readonly masks: Uint8Array
  private readonly outgoing: Array<Int32Array>
  private readonly incoming: Array<Int32Array>
  private readonly initiator: Int32Array
  private readonly target: Int32Array
  private readonly rate: Float64Array
  private readonly activeMs: Float64Array
  private readonly done: Float64Array
  private readonly settledTo: Float64Array
  private readonly rng: Int32Array
  private readonly violating: Uint8Array
  private readonly openAt: Int32Array
  readonly violationLog: Array<OpenViolation> = []
  readonly corruptionLog: Array<CorruptingWrite> = []
  readonly eventLog: Array<SimEvent> = []
  landed = 0

  constructor(
    readonly engines: ReadonlyArray<FabricMember>,
    readonly edges: ReadonlyArray<P2PEdge>,
    initiators: Int32Array,
    targets: Int32Array,
    writesPerSecond: number,
    seed: number,
    now: number
  ) {
    const n = engines.length
    const m = edges.length
    this.masks = Uint8Array.from(engines, maskOf)
    this.initiator = initiators
    this.target = targets
    this.rate = new Float64Array(m)
    this.activeMs = new Float64Array(m)
    this.done = new Float64Array(m)
    this.settledTo = new Float64Array(m).fill(now)
    this.rng = new Int32Array(m)
    this.violating = new Uint8Array(m)
    this.openAt = new Int32Array(m)
    const base = streamSeed(seed, "p2p")
    const outDegree = new Int32Array(n)
    const inDegree = new Int32Array(n)
    for (let e = 0; e < m; e++) {
      this.rate[e] = edges[e]?.writesPerSecond ?? writesPerSecond
      this.rng[e] = mix32(base ^ mix32(e))
      const a = initiators[e] ?? 0
      const b = targets[e] ?? 0
      outDegree[a] = (outDegree[a] ?? 0) + 1
      inDegree[b] = (inDegree[b] ?? 0) + 1
    }
    this.outgoing = Array.from(outDegree, (k) => new Int32Array(k))
    this.incoming = Array.from(inDegree, (k) => new Int32Array(k))
    outDegree.fill(0)
    inDegree.fill(0)
    for (let e = 0; e < m; e++) {
      const a = initiators[e] ?? 0
      const b = targets[e] ?? 0
      const out = this.outgoing[a]
      const inc = this.incoming[b]
      const i = outDegree[a] ?? 0
      const j = inDegree[b] ?? 0
      if (out !== undefined) out[i] = e
      if (inc !== undefined) inc[j] = e
      outDegree[a] = i + 1
      inDegree[b] = j + 1
    }
    for (let e = 0; e < m; e++) this.check(e, now, { device: "fabric", event: "FabricBuilt" })
  }

  private status(d: number): DeviceStatus {
    const engine = this.engines[d]
    return engine === undefined ? { state: "ERROR" } : engine.status()
  }

  /** Lands the writes of edge `e` due up to `now`, with the classes both ends had meanwhile. */
  settleEdge(e: number, now: number): void {
    const dt = now - (this.settledTo[e] ?? now)
    if (dt <= 0) return
    this.settledTo[e] = now
    const a = this.initiator[e] ?? 0
    const b = this.target[e] ?? 0
    const rate = this.rate[e] ?? 0
    if (((this.masks[a] ?? 0) & initiating) === 0 || rate === 0) return
    const active = (this.activeMs[e] ?? 0) + dt
    this.activeMs[e] = active
    const due = Math.floor((active * rate) / 1000)
    const count = due - (this.done[e] ?? 0)
    this.done[e] = due
    const engine = this.engines[b]
    if (count <= 0 || engine === undefined) return
    const corrupting = ((this.masks[b] ?? 0) & halted) !== 0
    const writes = Math.min(count, Math.max(1, engine.pageCount))
    this.rng[e] = engine.peerWrites(this.rng[e] ?? 0, writes, corrupting)
    this.landed += writes
    if (corrupting) {
      const edge = this.edges[e] ?? { initiator: "?", target: "?" }
      this.corruptionLog.push({ edge, from: now - dt, to: now, writes, target: engine.status() })
    }
  }

  settleAround(d: number, now: number): void {
    for (const e of this.outgoing[d] ?? []) this.settleEdge(e, now)
    this.settleInto(d, now)
  }

  settleInto(d: number, now: number): void {
    for (const e of this.incoming[d] ?? []) this.settleEdge(e, now)
  }

  changed(d: number, event: SimEvent): void {
    const engine = this.engines[d]
    if (engine !== undefined) this.masks[d] = maskOf(engine)
    this.eventLog.push(event)
    const cause: ViolationCause = { device: event.device, event: event._tag }
    for (const e of this.outgoing[d] ?? []) this.check(e, event.at, cause)
    for (const e of this.incoming[d] ?? []) this.check(e, event.at, cause)
  }

  /** The invariant on edge `e` at `now`: opens or closes its violation. */
  private check(e: number, now: number, cause: ViolationCause): void {
    const a = this.initiator[e] ?? 0
    const b = this.target[e] ?? 0
    const broken = ((this.masks[a] ?? 0) & initiating) !== 0 && ((this.masks[b] ?? 0) & halted) !== 0
    if (broken && this.violating[e] === 0) {
      this.violating[e] = 1
      this.openAt[e] = this.violationLog.length
      const edge = this.edges[e] ?? { initiator: "?", target: "?" }
      this.violationLog.push({ edge, at: now, initiator: this.status(a), target: this.status(b), cause })
    } else if (!broken && this.violating[e] === 1) {
      this.violating[e] = 0
      const open = this.violationLog[this.openAt[e] ?? -1]
      if (open !== undefined) open.endedAt = now
    }
  }

  settleAll(now: number): void {
    for (let d = 0; d < this.engines.length; d++) this.engines[d]?.syncIncoming(now)
  }
}

const snapshot = (v: OpenViolation): InvariantViolation => ({ ...v })

const fabricFrom = (
  devices: ReadonlyArray<SimDevice | ObservedDevice>,
  engines: ReadonlyArray<FabricMember>,
  edges: ReadonlyArray<P2PEdge>,
  initiators: Int32Array,
  targets: Int32Array,
  options: FabricOptions,
  now: number
): Fabric => {
  const core = new FabricCore(
    engines,
    edges,
    initiators,
    targets,
    options.writesPerSecond ?? 1000,
    options.seed ?? 0,
    now
  )
  engines.forEach((engine, d) => {
    engine.link = {
      settle: (t) => core.settleAround(d, t),
      settleIncoming: (t) => core.settleInto(d, t),
      changed: (event) => core.changed(d, event)
    }
  })
  const settle = Effect.clockWith((clock) => Effect.sync(() => core.settleAll(clock.currentTimeMillisUnsafe())))
  return {
    devices,
    edges,
    violations: () => core.violationLog.map(snapshot),
    corruptingWrites: () => [...core.corruptionLog],
    trace: () => [...core.eventLog],
    writesLanded: () => core.landed,
    settle,
    assertNoViolations: settle.pipe(
      Effect.andThen(
        Effect.suspend(() =>
          core.violationLog.length === 0 && core.corruptionLog.length === 0
            ? Effect.void
            : Effect.fail(
                new InvariantViolated({
                  violations: core.violationLog.map(snapshot),
                  corruptingWrites: [...core.corruptionLog]
                })
              )
        )
      ),
      Effect.withSpan("Fabric.assertNoViolations")
    ),
    detach: Effect.sync(() => {
      for (const engine of engines) engine.link = undefined
    })
  }
}

const memberOf = (device: Device): FabricMember | undefined => engineOf(device) ?? observedMemberOf(device)

const mayDoP2P = (engine: FabricMember | undefined): boolean => engine !== undefined && kindMayDoP2P(engine.kind)

/** Why an edge was refused (off the hot path: only called once the edge is known to be bad). */
const edgeProblem = (edge: P2PEdge, a: FabricMember | undefined, b: FabricMember | undefined): string => {
  const name = `${edge.initiator} → ${edge.target}`
  if (a === undefined || b === undefined) return `${name}: unknown device`
  if (a === b) return `${name}: a device is not its own P2P peer`
  const noP2P = kindMayDoP2P(a.kind) ? b : a
  return `${name}: ${noP2P.id} is a ${noP2P.kind} device, which has no P2P`
}

/**
 * Builds the fabric of `devices` joined by `edges`, starting now. Fails with `InvalidFabric`
 * if a device id repeats, a device already belongs to a fabric, an edge names an unknown
 * device, joins a device to itself, repeats, or touches a device whose kind cannot do P2P
 * (mdev, ccw, ap), or a write rate is negative or not finite.
 */
export const makeFabric = Effect.fn("Fabric.make")(function* (options: FabricOptions) {
  const devices = [...options.devices]
  const edges = [...options.edges]
  const index = new Map<string, number>()
  const engines: Array<FabricMember> = []
  for (const device of devices) {
    const engine = memberOf(device)
    if (engine === undefined)
      return yield* new InvalidFabric({ reason: `${device.id} is neither a simulated device nor an observed one` })
    if (index.has(device.id)) return yield* new InvalidFabric({ reason: `device id ${device.id} appears twice` })
    if (engine.link !== undefined)
      return yield* new InvalidFabric({ reason: `${device.id} already belongs to a fabric` })
    index.set(device.id, engines.length)
    engines.push(engine)
  }
  const badRate = (r: number | undefined) => r !== undefined && !(Number.isFinite(r) && r >= 0)
  if (badRate(options.writesPerSecond) || edges.some((e) => badRate(e.writesPerSecond))) {
    return yield* new InvalidFabric({ reason: "write rates must be finite and not negative" })
  }
  const n = engines.length
  const initiators = new Int32Array(edges.length)
  const targets = new Int32Array(edges.length)
  const keys = new Float64Array(edges.length)
  for (let e = 0; e < edges.length; e++) {
    const edge = edges[e] ?? { initiator: "", target: "" }
    const a = index.get(edge.initiator)
    const b = index.get(edge.target)
    if (a === undefined || b === undefined || a === b || !mayDoP2P(engines[a]) || !mayDoP2P(engines[b])) {
      const engineAt = (i: number | undefined) => (i === undefined ? undefined : engines[i])
      return yield* new InvalidFabric({ reason: edgeProblem(edge, engineAt(a), engineAt(b)) })
    }
    initiators[e] = a
    targets[e] = b
    keys[e] = a * n + b
  }
  // Duplicates found by sorting: a set of a million edges costs more than a typed sort.
  keys.sort()
  for (let i = 1; i < keys.length; i++) {
    const key = keys[i] ?? 0
    if (key !== keys[i - 1]) continue
    const initiator = engines[Math.floor(key / n)]?.id ?? "?"
    const target = engines[key % n]?.id ?? "?"
    return yield* new InvalidFabric({ reason: `${initiator} → ${target} appears twice` })
  }
  const clock = yield* Clock.Clock
  return fabricFrom(devices, engines, edges, initiators, targets, options, clock.currentTimeMillisUnsafe())
})
