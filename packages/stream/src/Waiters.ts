import { Effect } from "effect"

/**
 * Fibers waiting for some mutable state to change. `until(ready)` re-checks `ready` when it
 * registers, inside the same synchronous step, so a change between a caller's check and its
 * wait is never missed; the caller re-checks after waking, so a spurious wake is harmless.
 * Call `wakeAll` after every change.
 */
export class Waiters {
  private readonly wakers = new Set<() => void>()

  /** Suspends until `ready()` holds at registration or a later `wakeAll`; interrupting it removes the waiter. */
  until(ready: () => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (ready()) {
        resume(Effect.void)
        return
      }
      const waker = () => resume(Effect.void)
      this.wakers.add(waker)
      return Effect.sync(() => {
        this.wakers.delete(waker)
      })
    })
  }

  /** Wakes every waiter; call after each change of the state they wait on. */
  wakeAll(): void {
    if (this.wakers.size === 0) return
    const wakers = [...this.wakers]
    this.wakers.clear()
    for (const waker of wakers) waker()
  }
}
