/**
 * Buffers of one size, lent for device reads and recycled, so that a sender does not allocate
 * (and the kernel does not zero and fault in) a fresh buffer per read.
 *
 * The rule: a buffer goes back to the pool only through the `release` of the sink write that
 * carries its bytes (`ByteSink.write`, `FrameWriter.chunk`), that is once the socket has
 * written it out, never when the write's effect completes: a write completes as soon as the
 * socket's buffer is back under its bound, while the socket may still queue this very buffer,
 * and a buffer refilled then would send the next read's bytes in place of these. A buffer
 * whose release never comes (an interrupted write, a sink that cannot tell) is simply not
 * recycled: the pool allocates another.
 */
export class BufferPool {
  private readonly free: Array<Uint8Array> = []
  /** Buffers allocated so far (a measure of how well recycling works). */
  allocated = 0

  /**
   * `size`: bytes of every buffer; `keep`: how many idle buffers are held at most (more come
   * back only while writes overlap; those beyond it are left to the garbage collector).
   */
  constructor(
    readonly size: number,
    readonly keep: number = 8
  ) {}

  /** An idle buffer, or a new one. Its contents are whatever its last use left. */
  take(): Uint8Array {
    const buffer = this.free.pop()
    if (buffer !== undefined) return buffer
    this.allocated++
    return new Uint8Array(this.size)
  }

  /** Returns `buffer`; only once nothing reads it any more (see the rule above). */
  give(buffer: Uint8Array): void {
    if (buffer.length === this.size && this.free.length < this.keep) this.free.push(buffer)
  }

  /** A `release` callback that gives `buffer` back. */
  releaser(buffer: Uint8Array): () => void {
    return () => this.give(buffer)
  }

  /** Idle buffers held now. */
  get idle(): number {
    return this.free.length
  }
}
