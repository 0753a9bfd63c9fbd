import type { Device, DeviceError } from "@lockstep/device"
import type { Arc } from "@lockstep/fsm"
import { Cause, Clock, Effect, Exit, Option, Queue, Scope } from "effect"
import { ArcTimedOut, type FailureCause, TransitionInterrupted } from "./ExecutorError.js"
import { PlantedBug } from "./PlantedBug.js"

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
  readonly exit: Exit.Exit<void, DeviceError | ArcTimedOut>
}

const noEvents = (_: ArcEvent) => {}

/**
 * Runs each arc of a dependency graph as soon as every node it depends on has completed,
 * concurrently. On the first failure it starts nothing more and waits for the arcs in
 * flight to settle (each is bounded by the per-arc timeout), so that when it returns no
 * arc of the graph is running. If the run itself is interrupted, the arcs in flight are
 * interrupted with it.
 */
export const runGraph = (
  nodes: ReadonlyArray<GraphNode>,
  devices: ReadonlyMap<string, Device>,
  options: RunOptions = {}
): Effect.Effect<GraphOutcome> =>
  Effect.scoped(
    Effect.gen(function* () {
      // Arcs run in this scope: if the run is interrupted, closing it interrupts the arcs in
      // flight and waits for them, so no arc of this graph outlives the run.
      const scope = yield* Scope.Scope
      const clock = yield* Clock.Clock
      const now = () => clock.currentTimeMillisUnsafe()
      const emit = options.onEvent ?? noEvents
      const limit = options.concurrency ?? Number.POSITIVE_INFINITY
      const timeoutMs = options.arcTimeoutMs ?? 30_000
      const count = nodes.length
      const pending = new Int32Array(count)
      const dependents: Array<Array<number>> = Array.from({ length: count }, () => [])
      nodes.forEach((node, i) => {
        pending[i] = node.after.length
        for (const d of node.after) dependents[d]?.push(i)
      })
      const ready: Array<number> = []
      for (let i = count - 1; i >= 0; i--) if (pending[i] === 0) ready.push(i)
      // TEST-ONLY SEAM (see `PlantedBug`): an arc with several dependencies is released one early.
      const early = (yield* PlantedBug) === "release-next-phase-early"
      const releasedAt = (d: number) =>
        early && nodes[d]?.arc !== undefined && (nodes[d]?.after.length ?? 0) > 1 ? 1 : 0
      const release = (i: number) => {
        for (const d of dependents[i] ?? []) {
          pending[d] = (pending[d] ?? 0) - 1
          if (pending[d] === releasedAt(d)) ready.push(d)
        }
      }
      const completions = yield* Queue.unbounded<Completion>()
      const completed: Array<number> = []
      let failure: { node: number; error: FailureCause } | undefined
      let inFlight = 0

      const perform = (i: number, device: Device, arc: Arc) =>
        device.setState(arc.to).pipe(
          Effect.timeoutOrElse({
            duration: timeoutMs,
            orElse: () => Effect.fail(new ArcTimedOut({ device: device.id, arc, timeoutMs }))
          }),
          Effect.withSpan(
            "Lockstep.arc",
            { attributes: { "lockstep.device": device.id, "lockstep.from": arc.from, "lockstep.to": arc.to } },
            // The span names its device and arc; a stack capture per arc costs more than its bookkeeping.
            { captureStackTrace: false }
          ),
          Effect.exit,
          Effect.flatMap((exit) => Queue.offer(completions, { node: i, exit }))
        )

      const settle = ({ node: i, exit }: Completion): void => {
        inFlight--
        const node = nodes[i]
        if (node?.device === undefined || node.arc === undefined) return
        if (Exit.isSuccess(exit)) {
          completed.push(i)
          emit({ _tag: "ArcDone", id: node.id, device: node.device, arc: node.arc, at: now() })
          release(i)
          return
        }
        const error: FailureCause = Option.getOrElse(
          Cause.findErrorOption(exit.cause),
          () => new TransitionInterrupted()
        )
        emit({ _tag: "ArcFailed", id: node.id, device: node.device, arc: node.arc, at: now(), error })
        failure ??= { node: i, error }
      }

      while (true) {
        while (failure === undefined && inFlight < limit) {
          // Hear whatever the arcs already started have reported before starting another: one
          // that failed at once (into ERROR, say) must stop its peers from halting.
          for (const completion of yield* Queue.clear(completions)) settle(completion)
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
          emit({ _tag: "ArcStarted", id: node.id, device: node.device, arc: node.arc, at: now() })
          yield* Effect.forkIn(perform(i, device, node.arc), scope, { startImmediately: true })
        }
        if (inFlight === 0) break
        settle(yield* Queue.take(completions))
      }
      return { completed, failure: Option.fromNullishOr(failure) }
    })
  )
