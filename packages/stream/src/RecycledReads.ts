import type * as net from "node:net"
import { Effect, Option } from "effect"
import { readEndOf, type Teardown } from "./NodeChannel.js"
import type { ByteSource } from "./Transport.js"
import type { TransportError } from "./TransportError.js"
import { Waiters } from "./Waiters.js"

/**
 * Reads of a socket into a ring of recycled slabs, through Node's `onread` (which exists only on
 * sockets built with it: dialled ones), instead of a fresh buffer per read. Node's own reads
 * allocate 64 KiB each time, which V8 counts as external memory and answers with a full
 * collection about every 64 MiB (issue 17: 13–20 full collections per GiB received, none on
 * recycled slabs).
 *
 * Each read lands after the previous one in the current slab; a slab is refilled only once every
 * read in it has been released. The source lends what it reads: `read` answers a view of a slab,
 * valid until the next `read` (which releases it). When the next read has nowhere to land, the
 * socket is paused (the sender then waits on TCP's window) until the reader releases enough.
 */
export interface RecycledReads {
  /** The `onread` option to build the socket with. */
  readonly onread: net.OnReadOpts
  /** Binds the ring to the socket built with `onread`: its events, and pausing it. */
  readonly attach: (socket: net.Socket, teardown: Teardown) => ByteSource
}

/** A read smaller than this starts the next slab instead (the size of one of Node's own reads). */
const minimumRead = 64 * 1024

/** A ring of `slabs` slabs that together hold about `readAheadBytes`. */
export const recycledReads = (readAheadBytes: number, slabs = 4): RecycledReads => {
  const count = Math.max(2, Math.floor(slabs))
  const slabBytes = Math.max(2 * minimumRead, Math.ceil(readAheadBytes / count))
  const ring = Array.from({ length: count }, () => new Uint8Array(slabBytes))
  /** Reads queued or lent, per slab: a slab is refilled only at 0. */
  const holds = new Array<number>(count).fill(0)
  let current = 0
  let used = 0
  const queue: Array<{ readonly slab: number; readonly bytes: Uint8Array }> = []
  /** The slab of the read `read` lent last, released by the next `read`. */
  let lent: number | undefined
  let paused = false
  let socket: net.Socket | undefined
  const waiters = new Waiters()

  const onread: net.OnReadOpts = {
    // Called once before the first read, then after each one: where the next read lands. When
    // that slab is still held, the callback has paused the socket, and it resumes only once the
    // slab is free, so nothing lands there before.
    buffer: () => {
      if (slabBytes - used < minimumRead) {
        current = (current + 1) % count
        used = 0
      }
      return (ring[current] as Uint8Array).subarray(used)
    },
    callback: (n: number, buffer: Uint8Array) => {
      queue.push({ slab: current, bytes: buffer.subarray(0, n) })
      holds[current] = (holds[current] ?? 0) + 1
      used += n
      waiters.wakeAll()
      const next = slabBytes - used >= minimumRead ? current : (current + 1) % count
      if (next !== current && holds[next] !== 0) {
        paused = true
        return false
      }
      return true
    }
  }

  /** Releases the read lent last; resumes the socket once the slab it waits for is free. */
  const release = () => {
    if (lent === undefined) return
    holds[lent] = (holds[lent] ?? 1) - 1
    lent = undefined
    if (paused && holds[current] === 0) {
      paused = false
      socket?.resume()
    }
  }

  const attach = (bound: net.Socket, teardown: Teardown): ByteSource => {
    socket = bound
    const end = readEndOf(bound, teardown, waiters)
    const read: Effect.Effect<Option.Option<Uint8Array>, TransportError> = Effect.suspend(() => {
      release()
      const next = queue.shift()
      if (next !== undefined) {
        lent = next.slab
        return Effect.succeed(Option.some(next.bytes))
      }
      if (end.failure !== undefined) return Effect.fail(end.failure)
      if (end.ended) return Effect.succeed(Option.none())
      return Effect.andThen(
        waiters.until(() => queue.length > 0 || end.failure !== undefined || end.ended),
        read
      )
    })
    return { read, lends: true }
  }

  return { onread, attach }
}
