import type { Transport } from "@lockstep/stream"
import { Clock, Context, Effect, Layer } from "effect"

/**
 * The hosts' network links, shared by every migration this process runs: each host's NIC
 * carries at most its bandwidth each way (out of the source, into the destination). A
 * migration's stream reserves its bytes on both links it crosses before they go; a link is
 * reserved back to back from the moment it is free, so idle time earns no credit and the sum
 * over every migration never exceeds a link's bandwidth.
 *
 * Who goes next is decided by priority (lower first; the evacuation's start order): the
 * migration that started first streams at the link's full rate, and the others take what it
 * leaves — the gaps while it reads its devices, runs its arcs or commits. Sharing equally would
 * make migrations that started together finish together and then all sit in their switchovers
 * at once with the link idle; by priority they stay staggered, each one's non-streaming phases
 * covered by the next one's bytes. A waiter whose links are free is never held back for one
 * whose links are busy (the budget is work-conserving).
 *
 * The links live in the process: runners sharing Postgres each enforce the budget for the
 * migrations they run (see the README's fleet section).
 */
export class NicBudget extends Context.Service<
  NicBudget,
  {
    /** Waits until `bytes` may cross every link in `links`, reserving them; lower `priority` goes first. */
    readonly take: (links: ReadonlyArray<Link>, bytes: number, priority?: number) => Effect.Effect<void>
  }
>()("@lockstep/fleet/NicBudget") {}

/** One direction of a host's NIC. */
export interface Link {
  readonly host: string
  readonly direction: "out" | "in"
  readonly bytesPerSecond: number
}

interface Waiter {
  readonly links: ReadonlyArray<Link>
  readonly bytes: number
  readonly priority: number
  readonly seq: number
  readonly grant: () => void
}

const keyOf = (link: Link): string => `${link.host}/${link.direction}`

/** Writes this small go at once (their bytes still count). */
export const smallWriteBytes = 4096

/** A budget with a link per (host, direction), on the Clock of the fiber that makes it. */
export const make = Effect.gen(function* () {
  const clock = yield* Clock.Clock
  const context = yield* Effect.context<never>()
  const freeAt = new Map<string, number>()
  const waiting: Array<Waiter> = []
  let seq = 0
  /** When a sleeping fiber will look again, if one is sleeping. */
  let wakeAt: number | undefined

  const free = (link: Link, now: number) => (freeAt.get(keyOf(link)) ?? now) <= now

  /** Grants every waiter whose links are free, best priority first; arranges to look again when the next link frees. */
  const pump = (): void => {
    const now = clock.currentTimeMillisUnsafe()
    waiting.sort((a, b) => a.priority - b.priority || a.seq - b.seq)
    for (let i = 0; i < waiting.length; ) {
      const w = waiting[i]
      if (w?.links.every((l) => free(l, now))) {
        waiting.splice(i, 1)
        for (const l of w.links) freeAt.set(keyOf(l), now + (w.bytes / l.bytesPerSecond) * 1000)
        w.grant()
      } else i++
    }
    // The soonest a waiter could go: when the last of its links frees.
    let next = Number.POSITIVE_INFINITY
    for (const w of waiting) next = Math.min(next, Math.max(now, ...w.links.map((l) => freeAt.get(keyOf(l)) ?? now)))
    if (!Number.isFinite(next) || (wakeAt !== undefined && wakeAt <= next)) return
    wakeAt = next
    Effect.runForkWith(context)(
      Effect.andThen(Effect.sleep(next - now), () =>
        Effect.sync(() => {
          wakeAt = undefined
          pump()
        })
      )
    )
  }

  return NicBudget.of({
    take: (links, bytes, priority = 0) =>
      Effect.callback<void>((resume) => {
        if (bytes <= smallWriteBytes) {
          const now = clock.currentTimeMillisUnsafe()
          for (const l of links)
            freeAt.set(keyOf(l), Math.max(now, freeAt.get(keyOf(l)) ?? now) + (bytes / l.bytesPerSecond) * 1000)
          resume(Effect.void)
          return
        }
        const waiter: Waiter = { links, bytes, priority, seq: seq++, grant: () => resume(Effect.void) }
        waiting.push(waiter)
        pump()
        return Effect.sync(() => {
          const i = waiting.indexOf(waiter)
          if (i >= 0) waiting.splice(i, 1)
        })
      })
  })
})

/** The budget of this process. */
export const layer: Layer.Layer<NicBudget> = Layer.effect(NicBudget, make)

/** `transport` with every write first reserved on `links`, at the priority `priority()` answers then. */
export const shaped = (
  transport: Transport,
  budget: NicBudget["Service"],
  links: ReadonlyArray<Link>,
  priority: () => number = () => 0
): Transport => ({
  ...transport,
  write: (chunks, release) =>
    Effect.andThen(
      Effect.suspend(() =>
        budget.take(
          links,
          chunks.reduce((n, c) => n + c.length, 0),
          priority()
        )
      ),
      transport.write(chunks, release)
    )
})
