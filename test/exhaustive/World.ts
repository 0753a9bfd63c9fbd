import { Clock, Duration, Effect, type Fiber, Scheduler } from "effect"

/**
 * A world in which nothing happens unless the explorer says so, and everything that does happens
 * synchronously: every fiber task waits in one queue that `drain` runs to the end, and every sleep
 * is an event the explorer fires. A sleep of a registered length is an arc landing (the simulated
 * devices sleep their arc latency, each arc of each device a length of its own); any other sleep is
 * a timer (a per-arc timeout, a reset's timeout), which fires only when nothing else can happen:
 * arcs land long before their timeouts unless they hang.
 */

/** A fiber asleep: until its arc lands, or its timer fires. */
export interface Sleep {
  /** The landing it stands for, or undefined for a timer. */
  readonly landing: string | undefined
  readonly ms: number
  /** When it was registered, for a stable order among timers. */
  readonly order: number
  readonly wake: () => void
}

export class World {
  private readonly tasks: Array<() => void> = []
  private readonly asleep = new Set<Sleep>()
  private registered = 0
  /** Virtual time in ms: one per event fired, so that P2P writes land between events. */
  now = 0

  /** Runs every fiber task through the queue, never through the event loop. */
  readonly scheduler: Scheduler.Scheduler

  readonly clock: Clock.Clock

  constructor(private readonly landings: ReadonlyMap<number, string>) {
    this.scheduler = new Scheduler.MixedScheduler("sync", (task) => {
      this.tasks.push(task)
      return () => {
        const i = this.tasks.indexOf(task)
        if (i >= 0) this.tasks.splice(i, 1)
      }
    })
    const sleep = (duration: Duration.Duration): Effect.Effect<void> =>
      Effect.callback<void>((resume) => {
        const ms = Duration.toMillis(duration)
        const entry: Sleep = {
          landing: this.landings.get(ms),
          ms,
          order: this.registered++,
          wake: () => resume(Effect.void)
        }
        this.asleep.add(entry)
        return Effect.sync(() => {
          this.asleep.delete(entry)
        })
      })
    this.clock = {
      currentTimeMillisUnsafe: () => this.now,
      currentTimeMillis: Effect.sync(() => this.now),
      currentTimeNanosUnsafe: () => BigInt(this.now) * 1_000_000n,
      currentTimeNanos: Effect.sync(() => BigInt(this.now) * 1_000_000n),
      monotonicTimeNanosUnsafe: () => BigInt(this.now) * 1_000_000n,
      monotonicTimeNanos: Effect.sync(() => BigInt(this.now) * 1_000_000n),
      sleep
    }
  }

  /** Runs every queued task, and the tasks they queue, until nothing is left to run. */
  drain(): void {
    for (let n = 0; this.tasks.length > 0; n++) {
      if (n > 10_000_000) throw new Error("the world never settles: a fiber keeps running")
      this.tasks.shift()?.()
    }
  }

  /** The arcs that may land now, in a stable order. */
  landingsDue(): Array<Sleep> {
    return [...this.asleep].filter((s) => s.landing !== undefined).sort((a, b) => a.ms - b.ms)
  }

  /** The timer that fires first, if any. */
  firstTimer(): Sleep | undefined {
    let first: Sleep | undefined
    for (const s of this.asleep)
      if (
        s.landing === undefined &&
        (first === undefined || s.ms < first.ms || (s.ms === first.ms && s.order < first.order))
      )
        first = s
    return first
  }

  /** Fires one sleep (a landing or a timer), one ms later, and runs everything it wakes. */
  fire(s: Sleep): void {
    this.asleep.delete(s)
    this.now += 1
    s.wake()
    this.drain()
  }

  /** Starts `effect` in this world and runs it until it first waits for an event. */
  start<A, E>(effect: Effect.Effect<A, E>): Fiber.Fiber<A, E> {
    const fiber = Effect.runFork(Effect.provideService(effect, Clock.Clock, this.clock), { scheduler: this.scheduler })
    this.drain()
    return fiber
  }
}
