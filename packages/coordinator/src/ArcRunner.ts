import type { Device, DeviceError } from "@lockstep/device"
import type { Arc } from "@lockstep/fsm"
import { Cause, Clock, Deferred, Effect, Exit, type Fiber, Option, Scope, Tracer } from "effect"
import { ArcTimedOut, type FailureCause, TransitionInterrupted } from "./ExecutorError.js"

/**
 * One node of an executable dependency graph: an arc of one device, or a barrier (a join
 * point with no work of its own, used so that cliques cost O(N) dependencies, not N²).
 */
export interface GraphNode {
  /** The arc to perform, or `undefined` for a barrier. */
  readonly device: string | undefined
  readonly arc: Arc | undefined
  /** Indices of the nodes that must complete before this one starts. */
  readonly after: ReadonlyArray<number>
  /** A stable name for events and errors, e.g. `a3`. */
  readonly id: string
}

/** What the arc runner reports as it goes. Times are the Clock's milliseconds (virtual under TestClock). */
export type ArcEvent =
  | {
      readonly _tag: "ArcStarted"
      readonly id: string
      readonly device: string
      readonly arc: Arc
      readonly at: number
    }
  | { readonly _tag: "ArcDone"; readonly id: string; readonly device: string; readonly arc: Arc; readonly at: number }
  | {
      readonly _tag: "ArcFailed"
      readonly id: string
      readonly device: string
      readonly arc: Arc
      readonly at: number
      readonly error: FailureCause
    }

/** How a graph run ended. */
export interface GraphOutcome {
  /** Node indices that completed, in completion order. */
  readonly completed: ReadonlyArray<number>
  /** The first failure, if any; once it happened no further arc was started. */
  readonly failure: Option.Option<{ readonly node: number; readonly error: FailureCause }>
}

/** Options of a graph run. */
export interface RunOptions {
  /** At most this many arcs in flight at once (default: unbounded). */
  readonly concurrency?: number | undefined
  /** Per-arc timeout in milliseconds (default 30 s). A timed-out arc is interrupted. */
  readonly arcTimeoutMs?: number | undefined
  /** Called synchronously for every event, in order. */
  readonly onEvent?: ((event: ArcEvent) => void) | undefined
}

interface Completion {
  readonly node: number
  readonly exit: Exit.Exit<void, DeviceError>
}

/** Which nodes may start: those whose dependencies have all completed. */
interface Readiness {
  /** Nodes ready to start, the next one last. */
  readonly ready: Array<number>
  /** Node `i` completed: its dependents that now have nothing left to wait for become ready. */
  readonly release: (i: number) => void
}

const readinessOf = (nodes: ReadonlyArray<GraphNode>): Readiness => {
  const count = nodes.length
  const pending = new Int32Array(count)
  const dependents: Array<Array<number>> = Array.from({ length: count }, () => [])
  nodes.forEach((node, i) => {
    pending[i] = node.after.length
    for (const d of node.after) dependents[d]?.push(i)
  })
  const ready: Array<number> = []
  for (let i = count - 1; i >= 0; i--) if (pending[i] === 0) ready.push(i)
  const release = (i: number) => {
    for (const d of dependents[i] ?? []) {
      pending[d] = (pending[d] ?? 0) - 1
      if (pending[d] === 0) ready.push(d)
    }
  }
  return { ready, release }
}

/**
 * Completions of the arcs that did not end as they started arrive from their fibers into a plain
 * array; the loop sleeps on a one-shot wake-up only when it has nothing to do (no queue and no
 * fiber per completion).
 */
interface Mailbox {
  readonly finished: Uint8Array
  readonly complete: (node: number, exit: Exit.Exit<void, DeviceError>) => void
  /** Hands everything reported since the last drain to `settle`, in order. */
  readonly drain: (settle: (completion: Completion) => void) => void
  /** Waits until something is reported, unless something already is. */
  readonly awaitNext: Effect.Effect<void>
}

const mailboxOf = (count: number): Mailbox => {
  const finished = new Uint8Array(count)
  const completions: Array<Completion> = []
  let wake: Deferred.Deferred<void> | undefined
  return {
    finished,
    complete: (node, exit) => {
      finished[node] = 1
      completions.push({ node, exit })
      const w = wake
      wake = undefined
      if (w !== undefined) Deferred.doneUnsafe(w, Effect.void)
    },
    drain: (settle) => {
      if (completions.length === 0) return
      // Read in place, not spliced out: this runs before every arc started.
      for (let k = 0; k < completions.length; k++) {
        const completion = completions[k]
        if (completion !== undefined) settle(completion)
      }
      completions.length = 0
    },
    awaitNext: Effect.suspend(() => {
      if (completions.length > 0) return Effect.void
      wake = Deferred.makeUnsafe<void>()
      return Deferred.await(wake)
    })
  }
}

/**
 * One watchdog for the whole run instead of a timer per arc: every arc gets the same timeout,
 * so deadlines come in start order and the watchdog only watches the oldest.
 */
interface Watchdog {
  readonly timedOut: Uint8Array
  /** Watch an arc just started: interrupt it if it is still in flight when its deadline comes. */
  readonly watch: (node: number, at: number, fiber: Fiber.Fiber<void, DeviceError>) => void
  readonly run: Effect.Effect<never>
}

const watchdogOf = (finished: Uint8Array, now: () => number): Watchdog => {
  const timedOut = new Uint8Array(finished.length)
  const deadlines: Array<{
    readonly node: number
    readonly at: number
    readonly fiber: Fiber.Fiber<void, DeviceError>
  }> = []
  let oldest = 0
  let watchdogWake: Deferred.Deferred<void> | undefined
  const run = Effect.gen(function* () {
    while (true) {
      while (oldest < deadlines.length && finished[deadlines[oldest]?.node ?? 0] === 1) oldest++
      const next = deadlines[oldest]
      if (next === undefined) {
        watchdogWake = Deferred.makeUnsafe<void>()
        yield* Deferred.await(watchdogWake)
        continue
      }
      // Sleep once until this arc's deadline (no re-reading of the clock: the deadline has come
      // when the sleep ends), then time it out if it is still in flight.
      const wait = next.at - now()
      if (wait > 0) yield* Effect.sleep(wait)
      oldest++
      if (finished[next.node] === 1) continue
      timedOut[next.node] = 1
      next.fiber.interruptUnsafe()
    }
  })
  const watch = (node: number, at: number, fiber: Fiber.Fiber<void, DeviceError>) => {
    deadlines.push({ node, at, fiber })
    const w = watchdogWake
    watchdogWake = undefined
    if (w !== undefined) Deferred.doneUnsafe(w, Effect.void)
  }
  return { timedOut, watch, run }
}

/**
 * Runs each arc of a dependency graph as soon as every node it depends on has completed,
 * concurrently. On the first failure it starts nothing more and waits for the arcs in
 * flight to settle (each is bounded by the per-arc timeout), so that when it returns no
 * arc of the graph is running. If the run itself is interrupted, the arcs in flight are
 * interrupted with it.
 *
 * Written by hand rather than as `Effect.forEach` over the nodes with a `Deferred` per node, a
 * semaphore for the bound and `Effect.timeoutOrElse` per arc, because that library form costs
 * 2.8–6.4× as much CPU per arc (figure 2, bench/LibraryScheduler.ts, same graphs interleaved, 9
 * repetitions on 2026-12-05: 1024 devices 9.3/12.7 µs against 2.8/3.3 µs min/median; 256
 * devices 11.3/21.5 against 2.3/2.9), far above the 20% issue 14 allows for the library form.
 */
export const runGraph = (
  nodes: ReadonlyArray<GraphNode>,
  devices: ReadonlyMap<string, Device>,
  options: RunOptions = {}
): Effect.Effect<GraphOutcome> => runGraphMarking(nodes, devices, options, undefined)

/**
 * `runGraph`, marking in `started` (one entry per node) every arc it starts, as it starts it:
 * what the executor needs to know where a device that cannot be read afterwards may be, without
 * an event per arc.
 */
export const runGraphMarking = (
  nodes: ReadonlyArray<GraphNode>,
  devices: ReadonlyMap<string, Device>,
  options: RunOptions,
  started: Uint8Array | undefined
): Effect.Effect<GraphOutcome> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Arcs run in this scope: if the run is interrupted, closing it interrupts the arcs in
      // flight and waits for them, so no arc of this graph outlives the run.
      const scope = yield* Scope.Scope
      const clock = yield* Clock.Clock
      const now = () => clock.currentTimeMillisUnsafe()
      // No listener, no events: nothing is built (nor the clock read) for nobody (issue 17).
      const emit = options.onEvent
      const limit = options.concurrency ?? Number.POSITIVE_INFINITY
      const timeoutMs = options.arcTimeoutMs ?? 30_000
      const { ready, release } = readinessOf(nodes)
      const mailbox = mailboxOf(nodes.length)
      const watchdog = watchdogOf(mailbox.finished, now)
      yield* Effect.forkIn(watchdog.run, scope)
      const completed: Array<Completion["node"]> = []
      let failure: { node: number; error: FailureCause } | undefined
      let inFlight = 0
      // A span per arc only where someone collects spans (a tracer other than Effect's native
      // one, e.g. @lockstep/telemetry's): without one, nobody reads it, and it is a fifth of the
      // coordinator's own cost per arc (issue 17's profile).
      const traced = (yield* Tracer.Tracer) !== Tracer.nativeTracer
      const perform = (device: Device, arc: Arc): Effect.Effect<void, DeviceError> =>
        traced
          ? device.setState(arc.to).pipe(
              Effect.withSpan(
                "Lockstep.arc",
                { attributes: { "lockstep.device": device.id, "lockstep.from": arc.from, "lockstep.to": arc.to } },
                // The span names its device and arc; a stack capture per arc costs more than its bookkeeping.
                { captureStackTrace: false }
              )
            )
          : device.setState(arc.to)

      const settle = ({ node: i, exit }: Completion): void => {
        inFlight--
        const node = nodes[i]
        if (node?.device === undefined || node.arc === undefined) return
        if (Exit.isSuccess(exit)) {
          completed.push(i)
          emit?.({ _tag: "ArcDone", id: node.id, device: node.device, arc: node.arc, at: now() })
          release(i)
          return
        }
        const error: FailureCause =
          watchdog.timedOut[i] === 1
            ? new ArcTimedOut({ device: node.device, arc: node.arc, timeoutMs })
            : Option.getOrElse(Cause.findErrorOption(exit.cause), () => new TransitionInterrupted())
        emit?.({ _tag: "ArcFailed", id: node.id, device: node.device, arc: node.arc, at: now(), error })
        failure ??= { node: i, error }
      }

      while (true) {
        while (failure === undefined && inFlight < limit) {
          // Hear whatever the arcs already started have reported before starting another: one
          // that failed at once (into ERROR, say) must stop its peers from halting.
          mailbox.drain(settle)
          if (failure !== undefined) break
          const i = ready.pop()
          if (i === undefined) break
          const node = nodes[i]
          if (node === undefined) continue
          if (node.device === undefined || node.arc === undefined) {
            completed.push(i)
            release(i)
            continue
          }
          const device = devices.get(node.device)
          if (device === undefined) {
            return yield* Effect.die(new Error(`plan names device ${node.device}, which the group does not have`))
          }
          inFlight++
          if (started !== undefined) started[i] = 1
          emit?.({ _tag: "ArcStarted", id: node.id, device: node.device, arc: node.arc, at: now() })
          const fiber = yield* Effect.forkIn(perform(device, node.arc), scope, { startImmediately: true })
          // An arc that ended as it started (a zero-latency one) settles here: no completion to
          // post, no deadline to watch.
          const exit = fiber.pollUnsafe()
          if (exit !== undefined) {
            mailbox.finished[i] = 1
            settle({ node: i, exit })
            continue
          }
          // Also when the watchdog interrupts it: every arc started reports its end.
          fiber.addObserver((exit) => mailbox.complete(i, exit))
          watchdog.watch(i, now() + timeoutMs, fiber)
        }
        if (inFlight === 0) break
        yield* mailbox.awaitNext
        mailbox.drain(settle)
      }
      return { completed, failure: Option.fromNullishOr(failure) }
    })
  )
