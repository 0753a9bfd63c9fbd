import { Duration, Effect, type Option } from "effect"
import { TransportError, type TransportOperation } from "./TransportError.js"

/** Where bytes come from: one direction of a channel, or a file. */
export interface ByteSource {
  /**
   * The next bytes, as they arrived (never empty), or `None` once the writer has ended the
   * stream cleanly. Waits while nothing is available; reading nothing is what slows the writer.
   * The returned buffer belongs to the caller, unless the source `lends`.
   */
  readonly read: Effect.Effect<Option.Option<Uint8Array>, TransportError>
  /**
   * Whether `read` lends its bytes instead of giving them: they stay valid only until the next
   * `read`, after which the source reuses their memory (`TcpTransport.connect`'s `recycledReads`).
   * A reader that keeps bytes across reads copies them (`FrameReader` does). Absent: false.
   */
  readonly lends?: boolean
}

/** Where bytes go: one direction of a channel, or a file. */
export interface ByteSink {
  /**
   * Hands the buffers over in order, whole and at once (no other write interleaves with them),
   * then completes once the sink's buffer is back within its bound: a slow reader slows the
   * writer, and a sink holds at most its bound plus one write. Interrupting a write abandons
   * only that wait. The buffers are not copied: do not modify them afterwards.
   *
   * `release`, when given, is called once the sink no longer holds these buffers: they have
   * been written out (to the kernel, for a socket or a file), or the sink failed or was torn
   * down with them. Only then may their owner reuse them (`BufferPool`). That is later than the
   * write's completion, which only says the sink is back within its bound while it may still
   * queue these very buffers. A sink that cannot tell never calls it (the buffers are then
   * left to the garbage collector); a wrapper that does not pass it on is therefore safe.
   */
  readonly write: (chunks: ReadonlyArray<Uint8Array>, release?: () => void) => Effect.Effect<void, TransportError>
  /** Ends the stream: the reader sees end-of-stream after the bytes written. Later writes fail. */
  readonly end: Effect.Effect<void, TransportError>
}

/**
 * A two-way byte channel: a source and a sink joined to one peer. Each direction ends on its
 * own (`end` half-closes), so a side can finish sending and still read its peer's answers.
 */
export interface Transport extends ByteSource, ByteSink {
  /** A description of the peer, for errors and logs (`127.0.0.1:40123`, `memory`, a path). */
  readonly peer: string
  /** Tears both directions down at once. Idempotent, never fails; pending operations fail with `TransportClosed`. */
  readonly close: Effect.Effect<void>
}

/** Time limits for the operations of a transport. */
export interface Timeouts {
  /** Longest wait for the next bytes. */
  readonly read?: Duration.Input
  /** Longest wait for one write to be accepted. */
  readonly write?: Duration.Input
}

/** The same transport, with reads and writes that fail with `TransportTimeout` past their limit. */
export const withTimeouts = (transport: Transport, timeouts: Timeouts): Transport => ({
  ...transport,
  read: limit(transport.read, "read", timeouts.read),
  write: (chunks, release) => limit(transport.write(chunks, release), "write", timeouts.write),
  end: limit(transport.end, "end", timeouts.write)
})

const limit = <A>(
  effect: Effect.Effect<A, TransportError>,
  operation: TransportOperation,
  duration: Duration.Input | undefined
): Effect.Effect<A, TransportError> => {
  if (duration === undefined) return effect
  const millis = Duration.toMillis(duration)
  return Effect.timeoutOrElse(effect, {
    duration,
    orElse: () => Effect.fail(TransportError.transportTimeout({ operation, millis }))
  })
}
