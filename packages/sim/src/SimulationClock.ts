import { Clock, Context, Duration, Effect, Fiber, Latch, Layer, Scheduler, Semaphore } from "effect"

/**
 * The clock of a simulation: virtual time that stands still until the simulation moves it.
 * `SimulationClock.layer` provides it as the `Clock` of everything it runs (simulated devices,
 * the coordinator's timeouts, a migration's deadlines), so a run's figures depend only on its
 * seed; `runOnVirtualTime` moves it. Swap in another layer to run the same program on other time.
 */
export class SimulationClock extends Context.Service<
  SimulationClock,
  {
    /**
     * Moves time forward `ms`, waking every sleep that ends on the way in time order (sleeps
     * that end together in the order they began), each one's work run until it waits again.
     */
    readonly adjust: (ms: number) => Effect.Effect<void>
  }
>()("@lockstep/sim/SimulationClock") {
  /** A clock at virtual time 0, provided as both `SimulationClock` and `Clock`. */
  static readonly layer: Layer.Layer<SimulationClock> = Layer.effectContext(
    Effect.map(Effect.context<never>(), (context) => {
      const clock = new VirtualClock(Context.get(context, Scheduler.Scheduler))
      return Context.make(Clock.Clock, clock as Clock.Clock).pipe(
        Context.add(Scheduler.Scheduler, clock.scheduler as Scheduler.Scheduler),
        Context.add(SimulationClock, { adjust: clock.adjust })
      )
    })
  )
}

/** A sleep waiting for virtual time to reach `at`. */
interface Sleeper {
  readonly at: number
  readonly latch: Latch.Latch
}

/** Counts the tasks scheduled while a woken sleep runs, so that time moves on only once they are done. */
interface Tracker {
  pending: number
  idle: (() => void) | undefined
}

const nanosPerMilli = 1_000_000n

/** How long, in real milliseconds, time waits for the work of a woken sleep. */
const busyLimitMs = 1000

/**
 * Virtual time and the sleeps waiting on it. Waking a sleep runs under a tracker: every task the
 * woken fiber schedules (and those they schedule) is counted, and time moves on only when all
 * have run, so what one instant causes happens before the next instant, whatever the scheduler.
 */
class VirtualClock {
  now = 0
  /** By end time; equal ends in the order they began. */
  readonly sleepers: Array<Sleeper> = []
  readonly #adjusting = Semaphore.makeUnsafe(1)
  #tracker: Tracker | undefined = undefined
  readonly scheduler: Scheduler.Scheduler

  constructor(parent: Scheduler.Scheduler) {
    const tracked = (task: () => void, tracker: Tracker) => () => {
      try {
        this.#runTracked(tracker, task)
      } finally {
        tracker.pending--
        if (tracker.pending === 0) tracker.idle?.()
      }
    }
    this.scheduler = {
      executionMode: parent.executionMode,
      shouldYield: (fiber) => parent.shouldYield(fiber),
      makeDispatcher: () => {
        const dispatcher = parent.makeDispatcher()
        return {
          scheduleTask: (task, priority) => {
            const tracker = this.#tracker
            if (tracker === undefined) return dispatcher.scheduleTask(task, priority)
            tracker.pending++
            dispatcher.scheduleTask(tracked(task, tracker), priority)
          },
          flush: () => dispatcher.flush()
        }
      }
    }
  }

  #runTracked(tracker: Tracker, task: () => void): void {
    const previous = this.#tracker
    this.#tracker = tracker
    try {
      task()
    } finally {
      this.#tracker = previous
    }
  }

  readonly currentTimeMillisUnsafe = (): number => this.now
  readonly currentTimeNanosUnsafe = (): bigint => BigInt(Math.floor(this.now)) * nanosPerMilli
  readonly monotonicTimeNanosUnsafe = (): bigint => this.currentTimeNanosUnsafe()
  readonly currentTimeMillis = Effect.sync(this.currentTimeMillisUnsafe)
  readonly currentTimeNanos = Effect.sync(this.currentTimeNanosUnsafe)
  readonly monotonicTimeNanos = Effect.sync(this.monotonicTimeNanosUnsafe)

  readonly sleep = (duration: Duration.Duration): Effect.Effect<void> =>
    Effect.suspend(() => {
      const at = this.now + Duration.toMillis(duration)
      if (at <= this.now) return Effect.void
      return Effect.acquireUseRelease(
        Effect.sync(() => {
          const sleeper: Sleeper = { at, latch: Latch.makeUnsafe() }
          const after = this.sleepers.findLastIndex((s) => s.at <= at)
          this.sleepers.splice(after + 1, 0, sleeper)
          return sleeper
        }),
        (sleeper) => sleeper.latch.await,
        (sleeper) =>
          Effect.sync(() => {
            const i = this.sleepers.indexOf(sleeper)
            if (i >= 0) this.sleepers.splice(i, 1)
          })
      )
    })

  /** Opens `latch` and waits until the work it releases has run. */
  #wake(latch: Latch.Latch): Effect.Effect<void> {
    return Effect.suspend(() => {
      const tracker: Tracker = { pending: 0, idle: undefined }
      this.#runTracked(tracker, () => latch.openUnsafe())
      if (tracker.pending === 0) return Effect.yieldNow
      const idle = Effect.callback<void>((resume) => {
        if (tracker.pending === 0) return resume(Effect.void)
        // A woken fiber that never waits again would hold time still for ever: after a real
        // second, time moves on without it (its later sleeps count from a later instant).
        const busy = setTimeout(() => resume(Effect.void), busyLimitMs)
        tracker.idle = () => {
          clearTimeout(busy)
          resume(Effect.void)
        }
        return Effect.sync(() => {
          clearTimeout(busy)
          tracker.idle = undefined
        })
      })
      return Effect.andThen(idle, Effect.yieldNow)
    })
  }

  readonly adjust = (ms: number): Effect.Effect<void> => {
    const clock = this
    return this.#adjusting.withPermits(1)(
      Effect.gen(function* () {
        // Let what is already scheduled run (and start its sleeps) before time moves.
        yield* Fiber.await(yield* Effect.forkChild(Effect.yieldNow))
        const end = clock.now + ms
        for (let next = clock.sleepers[0]; next !== undefined && next.at <= end; next = clock.sleepers[0]) {
          clock.sleepers.shift()
          clock.now = next.at
          yield* clock.#wake(next.latch)
        }
        clock.now = end
      })
    )
  }
}
