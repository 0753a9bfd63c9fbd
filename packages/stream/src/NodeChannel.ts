import type { Readable, Writable } from "node:stream"
import { Effect, Option } from "effect"
import type { ByteSink, ByteSource } from "./Transport.js"
import { TransportError, type TransportOperation } from "./TransportError.js"
import { Waiters } from "./Waiters.js"

/*
 * Effect views of Node streams (sockets, TLS sockets, files), with Node's own flow control:
 * a source pauses its stream once `readAheadBytes` are waiting to be read, a sink completes a
 * write only while the stream's buffer is under its high-water mark and otherwise waits for
 * 'drain'. Both are bounded by one write (one frame) beyond those marks.
 */

/** Whether the channel was torn down by this side; errors that follow are then `local`. */
export interface Teardown {
  readonly local: boolean
}

/** The string `code` of a Node error, or `UNKNOWN`. */
export const codeOf = (error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : "UNKNOWN"

const reasonOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const peerGone = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ETIMEDOUT", "ERR_STREAM_PREMATURE_CLOSE"])

const locallyGone = new Set(["ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END", "ERR_STREAM_ALREADY_FINISHED"])

/** Certificate verification failures OpenSSL reports without an `ERR_SSL_` prefix. */
const certificateCodes = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_SIGNATURE_FAILURE",
  "CERT_NOT_YET_VALID",
  "CERT_HAS_EXPIRED",
  "CERT_REVOKED",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "INVALID_CA",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

/** Whether a Node error is a TLS handshake or certificate failure. */
export const isTlsFailure = (error: unknown): boolean => {
  const code = codeOf(error)
  return code.startsWith("ERR_SSL_") || certificateCodes.has(code)
}

/** The typed transport error for a Node error. */
export const transportErrorOf = (operation: TransportOperation, error: unknown, teardown: Teardown): TransportError => {
  const code = codeOf(error)
  const reason = reasonOf(error)
  if (isTlsFailure(error)) return TransportError.tlsRefused({ operation, code, reason })
  if (teardown.local || locallyGone.has(code)) return TransportError.transportClosed({ operation, by: "local", reason })
  if (peerGone.has(code))
    return TransportError.transportClosed({ operation, by: "peer", reason: `${reason} (${code})` })
  return TransportError.transportFailed({ operation, code, reason })
}

/** How the reading of a Node stream has ended so far: cleanly ('end'), or with a failure. */
export interface ReadEnd {
  readonly ended: boolean
  readonly failure: TransportError | undefined
}

/**
 * Watches how `readable` ends ('end', 'error', 'close' before the end), waking `waiters` at each:
 * a close before the end is the peer's, or this side's once it tore the channel down.
 */
export const readEndOf = (readable: Readable, teardown: Teardown, waiters: Waiters): ReadEnd => {
  const end: { ended: boolean; failure: TransportError | undefined } = { ended: false, failure: undefined }
  readable.on("end", () => {
    end.ended = true
    waiters.wakeAll()
  })
  readable.on("error", (error) => {
    end.failure ??= transportErrorOf("read", error, teardown)
    waiters.wakeAll()
  })
  readable.on("close", () => {
    if (!end.ended) {
      end.failure ??= teardown.local
        ? TransportError.transportClosed({ operation: "read", by: "local", reason: "the channel was closed" })
        : TransportError.transportClosed({
            operation: "read",
            by: "peer",
            reason: "closed before the end of the stream"
          })
    }
    waiters.wakeAll()
  })
  return end
}

/** The reading half of a Node stream as a `ByteSource`. */
export const sourceOf = (readable: Readable, teardown: Teardown, readAheadBytes: number): ByteSource => {
  const queue: Array<Uint8Array> = []
  let queued = 0
  const waiters = new Waiters()
  readable.on("data", (chunk: Uint8Array) => {
    if (chunk.length === 0) return
    queue.push(chunk)
    queued += chunk.length
    if (queued >= readAheadBytes) readable.pause()
    waiters.wakeAll()
  })
  const end = readEndOf(readable, teardown, waiters)
  const read: Effect.Effect<Option.Option<Uint8Array>, TransportError> = Effect.suspend(() => {
    const chunk = queue.shift()
    if (chunk !== undefined) {
      queued -= chunk.length
      // Resumed at half the mark, not just under it, so a full queue does not pause and
      // resume the socket on every read.
      if (queued <= readAheadBytes / 2 && readable.isPaused()) readable.resume()
      return Effect.succeed(Option.some(chunk))
    }
    if (end.failure !== undefined) return Effect.fail(end.failure)
    if (end.ended) return Effect.succeed(Option.none())
    if (readable.isPaused()) readable.resume()
    return Effect.andThen(
      waiters.until(() => queue.length > 0 || end.failure !== undefined || end.ended),
      read
    )
  })
  return { read }
}

/** The writing half of a Node stream as a `ByteSink`. */
export const sinkOf = (writable: Writable, teardown: Teardown): ByteSink => {
  let failure: TransportError | undefined
  const waiters = new Waiters()
  writable.on("drain", () => waiters.wakeAll())
  writable.on("error", (error) => {
    failure ??= transportErrorOf("write", error, teardown)
    waiters.wakeAll()
  })
  writable.on("close", () => {
    if (!writable.writableFinished) {
      failure ??= TransportError.transportClosed({
        operation: "write",
        by: teardown.local ? "local" : "peer",
        reason: "the channel was closed"
      })
    }
    waiters.wakeAll()
  })
  const refused = (operation: TransportOperation): TransportError | undefined => {
    if (failure !== undefined) return failure
    if (writable.writableEnded) {
      return TransportError.transportClosed({ operation, by: "local", reason: "the stream was already ended" })
    }
    if (writable.destroyed)
      return TransportError.transportClosed({ operation, by: "local", reason: "the channel was closed" })
    return undefined
  }
  /**
   * Waits until the buffer is under its high-water mark again (or the stream was ended meanwhile:
   * ending flushes it); fails if the stream fails or is torn down first.
   */
  const settled = (): boolean =>
    !writable.writableNeedDrain || writable.writableEnded || failure !== undefined || writable.destroyed
  const drained: Effect.Effect<void, TransportError> = Effect.suspend(() => {
    if (failure !== undefined) return Effect.fail(failure)
    if (writable.destroyed) {
      return Effect.fail(
        TransportError.transportClosed({ operation: "write", by: "local", reason: "the channel was closed" })
      )
    }
    return settled() ? Effect.void : Effect.andThen(waiters.until(settled), drained)
  })
  const write = (chunks: ReadonlyArray<Uint8Array>, release?: () => void): Effect.Effect<void, TransportError> =>
    Effect.suspend(() => {
      const error = refused("write")
      if (error !== undefined) {
        release?.()
        return Effect.fail(error)
      }
      // Node calls a write's callback once its bytes are handed to the kernel (or the stream
      // failed or was destroyed with them); writes complete in order, so the last chunk's
      // callback says that all of them are done.
      const done = release === undefined ? undefined : () => release()
      const last = chunks.length - 1
      if (last === 0 && chunks[0] !== undefined) {
        writable.write(chunks[0], done)
      } else if (last < 0) {
        done?.()
      } else {
        // One gather write: corked chunks leave as a single writev.
        writable.cork()
        for (let i = 0; i < last; i++) writable.write(chunks[i] as Uint8Array)
        writable.write(chunks[last] as Uint8Array, done)
        writable.uncork()
      }
      return drained
    })
  const end: Effect.Effect<void, TransportError> = Effect.suspend(() => {
    const error = refused("end")
    if (error !== undefined) return Effect.fail(error)
    return Effect.callback<void, TransportError>((resume) => {
      const onFinish = () => {
        cleanup()
        resume(Effect.void)
      }
      const onFailure = () => {
        cleanup()
        resume(
          Effect.fail(failure ?? TransportError.transportClosed({ operation: "end", by: "peer", reason: "closed" }))
        )
      }
      const cleanup = () => {
        writable.off("finish", onFinish)
        writable.off("error", onFailure)
        writable.off("close", onFailure)
      }
      writable.once("finish", onFinish)
      writable.once("error", onFailure)
      writable.once("close", onFailure)
      writable.end()
      return Effect.sync(cleanup)
    })
  })
  return { write, end }
}
