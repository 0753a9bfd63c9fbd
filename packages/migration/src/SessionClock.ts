import { Effect } from "effect"

/** The clock's time in ms, read without an effect (for events and phase times). */
export const clockNow: Effect.Effect<() => number> = Effect.clockWith((clock) =>
  Effect.succeed(() => clock.currentTimeMillisUnsafe())
)

/** Milliseconds to the microsecond: virtual time and pacing make long fractions that mean nothing. */
export const roundMs = (ms: number): number => Math.round(ms * 1000) / 1000
