import { Effect, Option } from "effect"
import type { Transport } from "./Transport.js"
import { TransportError, type TransportOperation } from "./TransportError.js"
import { Waiters } from "./Waiters.js"

/** Settings of an in-memory channel. */
export interface MemoryOptions {
  /** Bytes each direction buffers before a writer waits for its reader (plus one write). Default 64 KiB. */
  readonly capacity?: number
}

/**
 * Two connected in-memory transports: what one writes, the other reads. A write is handed over
 * whole (buffers by reference, never copied), then waits until its direction holds at most
 * `capacity` bytes, so each direction buffers at most `capacity` plus one write. Runs entirely
 * on fibers, so it works under virtual time.
 */
export const pair = (options: MemoryOptions = {}): Effect.Effect<readonly [Transport, Transport]> =>
  Effect.sync(() => {
    const capacity = Math.max(1, Math.floor(options.capacity ?? 64 * 1024))
    const aToB = new Pipe(capacity)
    const bToA = new Pipe(capacity)
    return [side(bToA, aToB, "memory:b"), side(aToB, bToA, "memory:a")] as const
  })

const side = (incoming: Pipe, outgoing: Pipe, peer: string): Transport => {
  return {
    peer,
    read: incoming.read,
    write: (chunks, release) => outgoing.write(chunks, release),
    end: outgoing.end,
    close: Effect.sync(() => {
      outgoing.closeWriter()
      incoming.closeReader()
    })
  }
}

/** One direction of a memory channel: a bounded byte queue. */
class Pipe {
  private readonly chunks: Array<Uint8Array> = []
  private size = 0
  /** `closed`: the writer's side was closed without ending the stream. */
  private writer: "open" | "ended" | "closed" = "open"
  private readerClosed = false
  private readonly readers = new Waiters()
  private readonly writers = new Waiters()

  constructor(private readonly capacity: number) {}

  readonly read: Effect.Effect<Option.Option<Uint8Array>, TransportError> = Effect.suspend(() => {
    if (this.readerClosed) return Effect.fail(closed("read", "local", "the channel was closed"))
    const chunk = this.chunks.shift()
    if (chunk !== undefined) {
      this.size -= chunk.length
      this.writers.wakeAll()
      return Effect.succeed(Option.some(chunk))
    }
    if (this.writer === "ended") return Effect.succeed(Option.none())
    if (this.writer === "closed")
      return Effect.fail(closed("read", "peer", "the peer closed without ending the stream"))
    return Effect.andThen(
      this.readers.until(() => this.chunks.length > 0 || this.writer !== "open" || this.readerClosed),
      this.read
    )
  })

  /**
   * Hands the chunks over whole, then waits until the pipe is back within its capacity. The
   * reader owns what it reads, so chunks to be released are copied, and released at once.
   */
  write(chunks: ReadonlyArray<Uint8Array>, release?: () => void): Effect.Effect<void, TransportError> {
    return Effect.suspend(() => {
      const refused = this.writeRefused("write")
      if (refused !== undefined) {
        release?.()
        return Effect.fail(refused)
      }
      for (const chunk of chunks) {
        if (chunk.length === 0) continue
        this.chunks.push(release === undefined ? chunk : chunk.slice())
        this.size += chunk.length
      }
      release?.()
      this.readers.wakeAll()
      return this.drained
    })
  }

  /** Waits until the pipe holds at most its capacity; fails if either side closed meanwhile (the bytes are lost). */
  private readonly drained: Effect.Effect<void, TransportError> = Effect.suspend(() => {
    if (this.readerClosed) return Effect.fail(closed("write", "peer", "the peer closed the channel"))
    if (this.writer === "closed") return Effect.fail(closed("write", "local", "the channel was closed"))
    if (this.size <= this.capacity) return Effect.void
    return Effect.andThen(this.writers.until(this.writable), this.drained)
  })

  private readonly writable = (): boolean => this.size <= this.capacity || this.readerClosed || this.writer === "closed"

  readonly end: Effect.Effect<void, TransportError> = Effect.suspend(() => {
    const refused = this.writeRefused("end")
    if (refused !== undefined) return Effect.fail(refused)
    this.writer = "ended"
    this.readers.wakeAll()
    return Effect.void
  })

  closeWriter(): void {
    if (this.writer === "open") this.writer = "closed"
    this.readers.wakeAll()
    this.writers.wakeAll()
  }

  closeReader(): void {
    this.readerClosed = true
    this.chunks.length = 0
    this.size = 0
    this.readers.wakeAll()
    this.writers.wakeAll()
  }

  private writeRefused(operation: TransportOperation): TransportError | undefined {
    if (this.writer === "closed") return closed(operation, "local", "the channel was closed")
    if (this.writer === "ended") return closed(operation, "local", "the stream was already ended")
    if (this.readerClosed) return closed(operation, "peer", "the peer closed the channel")
    return undefined
  }
}

const closed = (operation: TransportOperation, by: "peer" | "local", reason: string): TransportError =>
  TransportError.transportClosed({ operation, by, reason })
