import { Effect, Semaphore } from "effect"

/**
 * The migration channel on virtual time: one link of fixed bandwidth that carries one chunk at
 * a time, first come first served. Sending `n` bytes holds the link for `n / bandwidth`; chunks
 * of concurrent senders queue for it, so whatever the schedule, the channel is busy exactly as
 * long as its bytes need and idle only when nobody has anything to send.
 */
export interface VirtualChannel {
  /** Holds the link for as long as `bytes` take on it. */
  readonly send: (bytes: number) => Effect.Effect<void>
  /** Milliseconds `bytes` need on the link. */
  readonly msFor: (bytes: number) => number
}

/** A channel of `bytesPerSecond`; needs the clock it should spend time on (`TestClock` here). */
export const makeVirtualChannel = (bytesPerSecond: number): Effect.Effect<VirtualChannel> =>
  Effect.map(Semaphore.make(1), (link) => {
    const msFor = (bytes: number) => (bytes * 1000) / bytesPerSecond
    return {
      msFor,
      send: (bytes) => Semaphore.withPermit(link, Effect.sleep(msFor(bytes)))
    }
  })
