import { expect } from "@effect/vitest"
import { decodeGroup, type Group, type GroupRuntime, stop } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { type State, stateClass } from "@lockstep/fsm"
import {
  Compatibility,
  type DestinationOptions,
  type DestinationSummary,
  Journal,
  type MigrationEvent,
  MigrationFailed,
  migrateDestination,
  migrateSource,
  type SourceOptions,
  type SourceSummary
} from "@lockstep/migration"
import {
  compareMemory,
  type Fault,
  type SimDevice,
  type SimEvent,
  type SimulatedGroup,
  simulateGroup
} from "@lockstep/sim"
import { type Frame, MemoryTransport, makeDecoder, type Transport, TransportError } from "@lockstep/stream"
import { Cause, Effect, Exit, Option, Result } from "effect"

/** A group document: devices with their `sim` parameters, and a topology. */
export interface GroupDoc {
  readonly devices: ReadonlyArray<{
    readonly id: string
    readonly kind: string
    readonly flags: ReadonlyArray<string>
    readonly sim?: Record<string, unknown>
  }>
  readonly topology?: unknown
}

/** Three GPUs that all DMA into each other, 64 KiB of state each. */
export const threeGpus: GroupDoc = {
  devices: ["gpu0", "gpu1", "gpu2"].map((id) => ({
    id,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: { stateSize: 64 * 1024, pageSize: 4096, arcLatencyMs: 2, dirtyBytesPerSecond: 256 * 1024 }
  })),
  topology: "shared-iommu"
}

/** The same document with faults added to some devices. */
export const withFaults = (doc: GroupDoc, faults: Readonly<Record<string, ReadonlyArray<Fault>>>): GroupDoc => ({
  ...doc,
  devices: doc.devices.map((d) => (faults[d.id] === undefined ? d : { ...d, sim: { ...d.sim, faults: faults[d.id] } }))
})

/** Compatibility of simulated devices: their geometry. */
export const simCompatibility = (groups: ReadonlyArray<SimulatedGroup>): Compatibility.Compatibility =>
  Compatibility.jsonFacts((device) => {
    // The device itself, or (for a wrapped device) the first simulated device of that id.
    const sims = groups.flatMap((g) => {
      const sim = g.devices.get(device.id)
      return sim === undefined ? [] : [sim]
    })
    const sim = sims.find((d) => d === device) ?? sims[0]
    return sim === undefined ? undefined : { stateSize: sim.config.stateSize, pageSize: sim.config.pageSize }
  })

/** Options of one simulated migration. */
export interface Pair {
  readonly source: SimulatedGroup
  readonly destination: SimulatedGroup
  readonly journal: Journal.Journal
  readonly compatibility: Compatibility.Compatibility
  /** Events of the destination's trace that parked it, before any migration. */
  readonly parkingEvents: number
}

/** A source and a destination group of simulated devices; the destination parked in STOP (an incoming group). */
export const makePair = (
  sourceDoc: GroupDoc,
  destinationDoc: GroupDoc = sourceDoc,
  options: {
    readonly writesPerSecond?: number
    readonly seed?: number
    /** The fabrics' edges (both sides), when the test derives them itself; default: each group's topology. */
    readonly edges?: ReadonlyArray<readonly [string, string]>
  } = {}
): Effect.Effect<Pair, unknown> =>
  Effect.gen(function* () {
    const sourceGroup: Group = yield* decodeGroup(sourceDoc)
    const destinationGroup: Group = yield* decodeGroup(destinationDoc)
    const source = yield* simulateGroup(sourceGroup, {
      seed: options.seed ?? 1,
      writesPerSecond: options.writesPerSecond ?? 2000,
      edges: options.edges
    })
    const destination = yield* simulateGroup(destinationGroup, {
      seed: options.seed ?? 1,
      role: "destination",
      writesPerSecond: options.writesPerSecond ?? 2000,
      edges: options.edges
    })
    yield* stop(destination)
    return {
      source,
      destination,
      journal: Journal.memory(),
      compatibility: simCompatibility([source, destination]),
      parkingEvents: destination.fabric.trace().length
    }
  })

/** How both sides of one migration ended, with what the harness saw. */
export interface Outcome {
  readonly source: Exit.Exit<SourceSummary, MigrationFailed>
  readonly destination: Exit.Exit<DestinationSummary, MigrationFailed>
  readonly events: ReadonlyArray<MigrationEvent>
  /** Per device: whether the destination equalled the source when it voted (at validation). */
  readonly verified: ReadonlyArray<boolean>
}

/** Runs both sides over `transports` (default: an in-memory pair). */
export const migrate = (
  pair: Pair,
  options: {
    readonly source?: SourceOptions
    readonly destination?: DestinationOptions
    readonly transports?: Effect.Effect<readonly [Transport, Transport]>
    /** The runtimes the sessions drive, when not the simulated groups themselves (wrapped devices). */
    readonly runtimes?: { readonly source?: GroupRuntime; readonly destination?: GroupRuntime }
  } = {}
): Effect.Effect<Outcome> =>
  Effect.gen(function* () {
    const [a, b] = yield* options.transports ?? MemoryTransport.pair()
    const events: Array<MigrationEvent> = []
    const verified: Array<boolean> = []
    const onEvent = (e: MigrationEvent) => events.push(e)
    const verify = Effect.forEach([...pair.source.devices.values()], (device) => {
      const twin = pair.destination.devices.get(device.id)
      return twin === undefined
        ? Effect.succeed(false)
        : Effect.map(compareMemory(device, twin), (c) => c._tag === "Identical")
    }).pipe(
      Effect.tap((all) =>
        Effect.sync(() => {
          verified.push(...all)
        })
      ),
      Effect.asVoid
    )
    const [source, destination] = yield* Effect.all(
      [
        Effect.exit(
          migrateSource(options.runtimes?.source ?? pair.source, a, {
            journal: pair.journal,
            compatibility: pair.compatibility,
            onEvent,
            peerTimeoutMs: 5_000,
            arcTimeoutMs: 1_000,
            ...options.source
          })
        ),
        Effect.exit(
          migrateDestination(options.runtimes?.destination ?? pair.destination, b, {
            decisionJournal: pair.journal,
            compatibility: pair.compatibility,
            onEvent,
            beforeVote: verify,
            peerTimeoutMs: 5_000,
            arcTimeoutMs: 1_000,
            ...options.destination
          })
        )
      ],
      { concurrency: 2 }
    )
    return { source, destination, events, verified }
  })

const total = (chunks: ReadonlyArray<Uint8Array>) => chunks.reduce((n, c) => n + c.length, 0)

/** The first `n` bytes of `chunks`. */
const prefix = (chunks: ReadonlyArray<Uint8Array>, n: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let left = n
  for (const c of chunks) {
    if (left <= 0) break
    out.push(c.length <= left ? c : c.subarray(0, left))
    left -= c.length
  }
  return out
}

/**
 * The transport, cut after `limit` bytes written through it: the bytes up to the cut go out,
 * then the whole channel is closed (both directions), as a pulled cable or a killed peer would.
 */
export const cutAfter = (transport: Transport, limit: number): Transport => {
  let written = 0
  const cut = Effect.andThen(
    transport.close,
    Effect.fail(TransportError.transportClosed({ operation: "write", by: "local", reason: `cut at byte ${limit}` }))
  )
  return {
    ...transport,
    write: (chunks) =>
      Effect.suspend(() => {
        const n = total(chunks)
        if (written + n <= limit) {
          written += n
          return transport.write(chunks)
        }
        const keep = prefix(chunks, limit - written)
        written = limit
        return keep.length === 0 ? cut : Effect.andThen(transport.write(keep), cut)
      }),
    end: Effect.suspend(() => (written >= limit ? cut : transport.end))
  }
}

/** The transport, with bit `bit` of byte `offset` (counted over everything written) flipped in transit. */
export const flipBit = (transport: Transport, offset: number, bit: number): Transport => {
  let written = 0
  return {
    ...transport,
    write: (chunks) =>
      Effect.suspend(() => {
        const out = chunks.map((c) => {
          const at = offset - written
          written += c.length
          if (at < 0 || at >= c.length) return c
          const copy = Uint8Array.from(c)
          copy[at] = (copy[at] ?? 0) ^ (1 << bit)
          return copy
        })
        return transport.write(out)
      })
  }
}

/** An in-memory channel whose source end (the first) is wrapped. */
export const pairWith = (
  wrapSource: (t: Transport) => Transport,
  wrapDestination: (t: Transport) => Transport = (t) => t
): Effect.Effect<readonly [Transport, Transport]> =>
  Effect.map(MemoryTransport.pair(), ([a, b]) => [wrapSource(a), wrapDestination(b)] as const)

/** The group with each device replaced by `wrap(device)`: a backend that behaves differently. */
export const wrapDevices = (sim: SimulatedGroup, wrap: (device: SimDevice) => Device): GroupRuntime => ({
  group: sim.group,
  devices: new Map([...sim.devices].map(([id, d]) => [id, wrap(d)] as const))
})

/** Every device's state. */
export const statesOf = (sim: SimulatedGroup): Effect.Effect<Record<string, State>> =>
  Effect.map(
    Effect.forEach([...sim.devices.values()], (d) => Effect.map(d.status, (s) => [d.id, s.state] as const)),
    (rows) => Object.fromEntries(rows)
  )

/** Whether every device of the group is in `state`. */
export const allIn = (sim: SimulatedGroup, state: State): Effect.Effect<boolean> =>
  Effect.map(statesOf(sim), (states) => Object.values(states).every((s) => s === state))

/**
 * The fabric saw no P2P violation on either side, except the documented ERROR exposure: a device
 * that fails into ERROR while its targets are halted counts as initiating (it may do anything its
 * previous state allowed) from that instant until the rollback resets it.
 */
export const assertSafe = (pair: Pick<Pair, "source" | "destination">): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (const sim of [pair.source, pair.destination]) {
      yield* sim.fabric.settle
      const unexplained = sim.fabric
        .violations()
        .filter((v) => !(v.cause.event === "ArcFailed" && v.initiator.state === "ERROR"))
      if (unexplained.length > 0 || sim.fabric.corruptingWrites().length > 0)
        return yield* Effect.die(new Error(`P2P safety broken: ${JSON.stringify(sim.fabric.violations())}`))
    }
  })

/** The failure of an exit, or a defect if it succeeded. */
export const failureOf = <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<E> =>
  Exit.isFailure(exit)
    ? Effect.flip(Effect.failCause(exit.cause))
    : Effect.die(new Error(`expected a failure, got ${JSON.stringify(exit.value)}`))

/** The value of an exit, or a defect if it failed. */
export const successOf = <A, E>(exit: Exit.Exit<A, E>): Effect.Effect<A> =>
  Exit.isSuccess(exit)
    ? Effect.succeed(exit.value)
    : Effect.die(new Error(`expected a success, got ${String(exit.cause)}`))

/** Time intervals `[from, to)` during which `runs` held for some device of a trace. */
const intervals = (
  trace: ReadonlyArray<SimEvent>,
  initially: boolean,
  runs: (event: SimEvent, before: boolean) => boolean
): Array<readonly [number, number]> => {
  const running = new Map<string, boolean>()
  const out: Array<readonly [number, number]> = []
  let since: number | undefined = initially ? Number.NEGATIVE_INFINITY : undefined
  for (const e of trace) {
    running.set(e.device, runs(e, running.get(e.device) ?? initially))
    const now = [...running.values()].some((r) => r) || (initially && running.size === 0)
    if (now && since === undefined) since = e.at
    if (!now && since !== undefined) {
      out.push([since, e.at])
      since = undefined
    }
  }
  if (since !== undefined) out.push([since, Number.POSITIVE_INFINITY])
  return out
}

const notHalted = (s: State) => stateClass(s) !== "halted"

/**
 * At no instant did both groups run: the source runs while any of its devices is out of the
 * halted states (an arc in flight counting as its target); the destination from the moment an
 * arc takes a device to RUNNING (resuming it) until it leaves RUNNING or is reset. A device reset
 * and then parked never runs the group: its state is gone and it starts no DMA until that arc.
 */
export const assertNeverBothRun = (pair: Pair): Effect.Effect<void> =>
  Effect.sync(() => {
    const source = intervals(
      pair.source.fabric.trace(),
      true,
      (e) => notHalted(e.state) || (e.inFlight !== undefined && notHalted(e.inFlight.to))
    )
    const destination = intervals(pair.destination.fabric.trace().slice(pair.parkingEvents), false, (e, before) => {
      if (e._tag === "Reset") return false
      const resumed = before || (e._tag === "ArcStarted" && e.arc.to === "RUNNING")
      return resumed && (e.state === "RUNNING" || e.inFlight?.to === "RUNNING")
    })
    for (const [a, b] of source)
      for (const [c, d] of destination)
        if (a < d && c < b) throw new Error(`both groups ran during [${Math.max(a, c)}, ${Math.min(b, d)})`)
  })

/**
 * What every run cut or corrupted in transit keeps: each side ends with a summary or one typed
 * error, and the group has exactly one owner by the journal, with the states to match.
 */
export const checkOutcome = (pair: Pair, out: Outcome): Effect.Effect<void, unknown> =>
  Effect.gen(function* () {
    const exits: ReadonlyArray<Exit.Exit<unknown, MigrationFailed>> = [out.source, out.destination]
    for (const exit of exits) {
      if (Exit.isFailure(exit)) {
        const error = Cause.findErrorOption(exit.cause)
        expect(Option.isSome(error) && error.value instanceof MigrationFailed).toBe(true)
      }
    }
    const owner = yield* Journal.ownership(pair.journal)
    if (owner._tag === "DestinationOwns") {
      expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
      expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
      expect(out.verified).toEqual([true, true, true])
      yield* assertNeverBothRun(pair)
      yield* assertSafe(pair)
    } else {
      expect(Exit.isFailure(out.source)).toBe(true)
      yield* assertRolledBack(pair)
    }
  })

/**
 * A migration that failed left the group where it began: the source group runs, the
 * destination is parked in STOP, the two never ran at once, and the fabric saw no violation.
 */
export const assertRolledBack = (pair: Pair): Effect.Effect<void> =>
  Effect.gen(function* () {
    expect(yield* allIn(pair.source, "RUNNING")).toBe(true)
    expect(yield* allIn(pair.destination, "STOP")).toBe(true)
    yield* assertNeverBothRun(pair)
    yield* assertSafe(pair)
  })

/** Every frame of a complete recorded stream; bytes that do not decode fail the test with the format error. */
export const framesOf = (parts: ReadonlyArray<Uint8Array>): ReadonlyArray<Frame> => {
  const decoder = makeDecoder()
  for (const part of parts) decoder.push(part)
  decoder.end()
  const frames: Array<Frame> = []
  for (;;) {
    const next = decoder.next()
    if (Result.isFailure(next)) throw new Error(`the recorded bytes do not decode: ${next.failure.message}`)
    if (next.success === undefined) return frames
    frames.push(next.success)
  }
}

/** The transport, silent after `limit` bytes: later writes never complete (a hung peer or a black-holed route). */
export const stallAfter = (transport: Transport, limit: number): Transport => {
  let written = 0
  return {
    ...transport,
    write: (chunks) =>
      Effect.suspend(() => {
        written += total(chunks)
        return written <= limit ? transport.write(chunks) : Effect.never
      })
  }
}
