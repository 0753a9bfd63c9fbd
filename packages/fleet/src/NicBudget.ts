import type { Transport } from "@lockstep/stream"
import { Clock, Context, Effect, Layer } from "effect"

/**
 * The hosts' network links, shared by every migration this process runs: each host's NIC
 * carries at most its bandwidth each way (out of the source, into the destination), first come
 * first served. A migration's stream reserves its bytes on both links it crosses before they
 * go; a link is reserved back to back from the moment it is free, so idle time earns no credit
 * and the sum over every migration never exceeds a link's bandwidth. When only one migration is
 * left, it gets the whole link: sharing is work-conserving, so the evacuation's bytes leave at
 * the NIC's full rate as long as anything is streaming.
 *
 * The links live in the process: runners sharing Postgres each enforce the budget for the
 * migrations they run (see the README's fleet section).
 */
export class NicBudget extends Context.Service<
  NicBudget,
  {
    /**
     * Waits until `bytes` may cross every link in `links` (`{host, direction, bytesPerSecond}`),
     * reserving them.
     */
    readonly take: (links: ReadonlyArray<Link>, bytes: number) => Effect.Effect<void>
  }
>()("@lockstep/fleet/NicBudget") {}

/** One direction of a host's NIC. */
export interface Link {
  readonly host: string
  readonly direction: "out" | "in"
  readonly bytesPerSecond: number
}

/** A budget with a link per (host, direction), each free from the moment it was last reserved to. */
export const make = Effect.gen(function* () {
  const clock = yield* Clock.Clock
  const freeAt = new Map<string, number>()
  return NicBudget.of({
    take: (links, bytes) =>
      Effect.suspend(() => {
        const now = clock.currentTimeMillisUnsafe()
        let start = now
        for (const link of links) start = Math.max(start, freeAt.get(`${link.host}/${link.direction}`) ?? now)
        for (const link of links) {
          const key = `${link.host}/${link.direction}`
          freeAt.set(key, start + (bytes / link.bytesPerSecond) * 1000)
        }
        return start > now ? Effect.sleep(start - now) : Effect.void
      })
  })
})

/** The budget of this process. */
export const layer: Layer.Layer<NicBudget> = Layer.effect(NicBudget, make)

/** `transport` with every write first reserved on `links`. */
export const shaped = (transport: Transport, budget: NicBudget["Service"], links: ReadonlyArray<Link>): Transport => ({
  ...transport,
  write: (chunks) =>
    Effect.andThen(
      budget.take(
        links,
        chunks.reduce((n, c) => n + c.length, 0)
      ),
      transport.write(chunks)
    )
})
