import { Array as Arr, Cause, Effect, Option, Result, Stream } from "effect"
import { type Decoder, type DecoderOptions, makeDecoder } from "./Decoder.js"
import type { FormatError } from "./FormatError.js"
import type { Frame } from "./Frame.js"
import type { ByteSource } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

/** Settings of a frame reader: those of its decoder. */
export type FrameReaderOptions = DecoderOptions

/** Why the next frame could not be read: the bytes are not a valid stream, or the source failed. */
export type FrameReadError = FormatError | TransportError

/**
 * Reads and strictly decodes frames from a source. The source is read only when no whole
 * frame is buffered, so memory stays within one frame plus one read, and a reader that stops
 * pulling stops reading (back-pressure reaches the writer). A peer that falls silent without
 * closing is waited for: read through `withTimeouts` to turn that into `TransportTimeout`.
 *
 * From a source that lends its bytes (`source.lends`, recycled reads), a chunk's payload is
 * valid only until the next `next` (the reader's next read may reuse its memory): copy what
 * you keep longer. Every other frame is yours to keep.
 */
export interface FrameReader {
  /**
   * The next frame, or `None` once the stream end frame has been returned and the source has
   * ended with nothing after it. Reading past the stream end waits for the writer to end its
   * direction (`FrameWriter.end` does). A failure is final.
   */
  readonly next: Effect.Effect<Option.Option<Frame>, FrameReadError>
  /** Stream offset of the next undecoded byte. */
  readonly offset: Effect.Effect<number>
  /** Whether chunk payloads are lent (valid until the next `next`): the source lends its bytes. */
  readonly lends: boolean
}

/** A reader on `source`. */
export const make = (source: ByteSource, options: FrameReaderOptions = {}): Effect.Effect<FrameReader> =>
  Effect.sync(() => {
    const decoder = makeDecoder({ ...options, lent: source.lends === true })
    const batch = batchOf(decoder, source)
    let ready: ReadonlyArray<Frame> = []
    let at = 0
    const next: Effect.Effect<Option.Option<Frame>, FrameReadError> = Effect.suspend(() => {
      const frame = ready[at]
      if (frame !== undefined) {
        at += 1
        return Effect.succeed(Option.some(frame))
      }
      return Effect.map(batch, (frames) => {
        if (frames === undefined) return Option.none()
        ready = frames
        at = 1
        return Option.some(frames[0])
      })
    })
    return { next, offset: Effect.sync(() => decoder.offset), lends: source.lends === true }
  })

/**
 * The frames of `source` as a `Stream`, ending after the stream end frame once the source has
 * ended cleanly; it fails with the first format or transport error. Frames already decoded
 * from one read are emitted together. From a source that lends its bytes, a chunk's payload is
 * valid only until the next pull: copy what you keep longer.
 */
export const frames = (source: ByteSource, options: FrameReaderOptions = {}): Stream.Stream<Frame, FrameReadError> =>
  Stream.fromPull(
    Effect.sync(() => {
      const batch = batchOf(makeDecoder({ ...options, lent: source.lends === true }), source)
      return Effect.flatMap(batch, (frames) => (frames === undefined ? Cause.done() : Effect.succeed(frames)))
    })
  )

/**
 * Every frame decodable now, reading the source only when there is none; `undefined` once the
 * stream is complete and the source has ended.
 */
const batchOf = (
  decoder: Decoder,
  source: ByteSource
): Effect.Effect<Arr.NonEmptyArray<Frame> | undefined, FrameReadError> => {
  let sourceEnded = false
  const lends = source.lends === true
  const batch: Effect.Effect<Arr.NonEmptyArray<Frame> | undefined, FrameReadError> = Effect.suspend(() => {
    const frames: Array<Frame> = []
    for (;;) {
      const result = decoder.next()
      if (Result.isFailure(result)) {
        // Frames decoded before the error are delivered first; the error comes on the next pull.
        return Arr.isArrayNonEmpty(frames) ? Effect.succeed(frames) : Effect.fail(result.failure)
      }
      if (result.success === undefined) break
      frames.push(result.success)
    }
    if (Arr.isArrayNonEmpty(frames)) return Effect.succeed(frames)
    if (sourceEnded) return Effect.succeed(undefined)
    // The next read may reuse the memory of the earlier ones: what is left of them moves out.
    if (lends) decoder.detach()
    return Effect.flatMap(source.read, (bytes) => {
      if (Option.isSome(bytes)) {
        decoder.push(bytes.value)
      } else {
        sourceEnded = true
        decoder.end()
      }
      return batch
    })
  })
  return batch
}
