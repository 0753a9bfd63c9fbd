/*
 * The arc scheduler in library form, for figure 2 only: what `runGraph` (packages/coordinator
 * ArcRunner.ts) would be if written with Effect's own combinators, measured against it on the
 * same graphs (issue 14: keep the hand loop only if the library form costs more than 20% more
 * per arc). Same contract: an arc starts once every node it depends on has completed; at most
 * `concurrency` arcs in flight; each arc bounded by the per-arc timeout; on the first failure no
 * further arc starts and the arcs in flight settle before it returns.
 */
import {
  ArcTimedOut,
  type FailureCause,
  type GraphNode,
  type GraphOutcome,
  type RunOptions,
  TransitionInterrupted
} from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { Cause, Deferred, Effect, Exit, Option, Semaphore } from "effect"

/**
 * One fiber per node (`Effect.forEach` with unbounded concurrency), a `Deferred` per node that
 * says whether it completed (`true`) or the run stopped (`false`), a `Semaphore` for the bound,
 * and `Effect.timeoutOrElse` around every arc.
 */
export const runGraphLibrary = (
  nodes: ReadonlyArray<GraphNode>,
  devices: ReadonlyMap<string, Device>,
  options: RunOptions = {}
): Effect.Effect<GraphOutcome> =>
  Effect.gen(function* () {
    const timeoutMs = options.arcTimeoutMs ?? 30_000
    const done = nodes.map(() => Deferred.makeUnsafe<boolean>())
    const bound = options.concurrency === undefined ? undefined : yield* Semaphore.make(options.concurrency)
    const completed: Array<number> = []
    let failure: { node: number; error: FailureCause } | undefined
    // The first failure stops every node still waiting: none of them may start an arc.
    const stop = (node: number, error: FailureCause) =>
      Effect.sync(() => {
        failure ??= { node, error }
        for (const d of done) Deferred.doneUnsafe(d, Exit.succeed(false))
      })
    const arcOf = (node: GraphNode, device: Device): Effect.Effect<boolean, FailureCause> => {
      const arc = node.arc
      if (arc === undefined) return Effect.succeed(true)
      // Checked again once a permit is held: a failure while waiting for one stops this arc too.
      const timed = Effect.suspend(() =>
        failure !== undefined
          ? Effect.succeed(false)
          : device.setState(arc.to).pipe(
              Effect.timeoutOrElse({
                duration: timeoutMs,
                orElse: () => Effect.fail(new ArcTimedOut({ device: device.id, arc, timeoutMs }))
              }),
              Effect.as(true)
            )
      )
      return bound === undefined ? timed : bound.withPermits(1)(timed)
    }
    const runNode = (node: GraphNode, i: number) =>
      Effect.gen(function* () {
        const ready = yield* Effect.forEach(node.after, (d) =>
          Deferred.await(done[d] ?? Deferred.makeUnsafe<boolean>())
        )
        if (failure !== undefined || ready.includes(false)) return
        const device = node.device === undefined ? undefined : devices.get(node.device)
        if (node.device !== undefined && device === undefined) {
          return yield* Effect.die(new Error(`plan names device ${node.device}, which the group does not have`))
        }
        if (device !== undefined) {
          const exit = yield* Effect.exit(arcOf(node, device))
          if (Exit.isSuccess(exit) && !exit.value) return
          if (Exit.isFailure(exit)) {
            const error: FailureCause = Option.getOrElse(
              Cause.findErrorOption(exit.cause),
              () => new TransitionInterrupted()
            )
            return yield* stop(i, error)
          }
        }
        completed.push(i)
        Deferred.doneUnsafe(done[i] ?? Deferred.makeUnsafe<boolean>(), Exit.succeed(true))
      })
    yield* Effect.forEach(nodes, runNode, { concurrency: "unbounded", discard: true })
    return { completed, failure: Option.fromNullishOr(failure) }
  })
