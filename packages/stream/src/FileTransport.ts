import type { EventEmitter } from "node:events"
import * as fs from "node:fs"
import { Effect, type Scope } from "effect"
import { codeOf, sinkOf, sourceOf } from "./NodeChannel.js"
import type { ByteSink, ByteSource } from "./Transport.js"
import { TransportError } from "./TransportError.js"

/** Settings of a file read back as a stream. */
export interface FileSourceOptions {
  /** Bytes read from the file at a time. Default 256 KiB. */
  readonly readBytes?: number
}

/**
 * A file to save a stream into (created, or truncated), closed with the scope. A stream that
 * was not ended when the scope closes stays truncated on disk, and reads back as `Truncated`.
 */
export const sink = (path: string): Effect.Effect<ByteSink, TransportError, Scope.Scope> =>
  opened(
    () => fs.createWriteStream(path, { flags: "w", highWaterMark: 256 * 1024 }),
    (stream) => sinkOf(stream, { local: false })
  )

/** A saved stream read back from a file, closed with the scope. */
export const source = (
  path: string,
  options: FileSourceOptions = {}
): Effect.Effect<ByteSource, TransportError, Scope.Scope> => {
  const readBytes = options.readBytes ?? 256 * 1024
  return opened(
    () => fs.createReadStream(path, { highWaterMark: readBytes }),
    (stream) => sourceOf(stream, { local: false }, readBytes)
  )
}

/**
 * Opens a file stream, adapts it once it has its descriptor (the adapter's listeners are then in
 * place before any later error), and destroys it with the scope.
 */
const opened = <S extends fs.ReadStream | fs.WriteStream, A>(
  create: () => S,
  adapt: (stream: S) => A
): Effect.Effect<A, TransportError, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.callback<readonly [S, A], TransportError>((resume) => {
        const stream = create()
        const events: EventEmitter = stream
        const onError = (error: Error) => {
          stream.destroy()
          resume(
            Effect.fail(
              TransportError.transportFailed({ operation: "open", code: codeOf(error), reason: error.message })
            )
          )
        }
        events.once("error", onError)
        events.once("ready", () => {
          events.off("error", onError)
          resume(Effect.succeed([stream, adapt(stream)] as const))
        })
        return Effect.sync(() => {
          stream.destroy()
        })
      }),
      ([stream]) => Effect.sync(() => stream.destroy()),
      { interruptible: true }
    ),
    ([, adapted]) => adapted
  )
