import { Effect, Result, Semaphore } from "effect"
import { encodeFrame, encodePreamble } from "./Encoder.js"
import { FormatError } from "./FormatError.js"
import {
  ChunkPrefixBytes,
  type ControlKind,
  DefaultMaxFrameBytes,
  type Frame,
  FrameHeaderBytes,
  type Manifest,
  type ManifestDevice,
  type StreamEnd
} from "./Frame.js"
import { Sequence } from "./Sequence.js"
import type { ByteSink } from "./Transport.js"
import type { TransportError } from "./TransportError.js"

/** Settings of a frame writer. */
export interface FrameWriterOptions {
  /** Largest chunk payload per frame; longer payloads are split, without copying. Default 256 KiB. */
  readonly chunkBytes?: number
  /**
   * Largest frame (header and body) to emit; must not exceed the reader's. A manifest or control
   * frame over it is refused with `FrameTooLarge`. Default `DefaultMaxFrameBytes`.
   */
  readonly maxFrameBytes?: number
  /** The manifest carried by the opposite direction, naming the devices of this stream's control frames. */
  readonly peerManifest?: Manifest
}

/** Why a frame could not be written: the format refuses it, or the sink failed. */
export type FrameWriteError = FormatError | TransportError

/**
 * Encodes frames onto a sink, keeping the same ordering rules the reader enforces: it refuses
 * (with the error the reader would raise, at the offset the frame would have had) what the
 * reader would reject, and computes the per-device and stream totals itself. Operations may be
 * called from concurrent fibers; each frame is written whole, in the order the calls are
 * admitted. A refused frame writes nothing; a transport failure ends the writer (every later
 * call fails with it). A frame is handed to the sink whole or not at all, so interrupting a call
 * never leaves a partial frame; but the interrupted frame may or may not have gone out, so a
 * stream continued after an interruption may carry totals the reader rejects (never wrong data
 * it accepts). After an interruption, send `abort` and close.
 */
export interface FrameWriter {
  /** Sends the manifest; at most once, before any chunk. */
  readonly manifest: (devices: ReadonlyArray<ManifestDevice>) => Effect.Effect<void, FrameWriteError>
  /**
   * Sends bytes of one device (split into frames of at most `chunkBytes`). Empty payloads send
   * nothing. `release` is called once the sink no longer holds `payload` (`ByteSink.write`):
   * at once when nothing was handed to it (an empty payload, a refused frame, a broken writer).
   */
  readonly chunk: (device: number, payload: Uint8Array, release?: () => void) => Effect.Effect<void, FrameWriteError>
  /** Sends a device's end marker with the total of its chunks; returns that total. */
  readonly endDevice: (device: number) => Effect.Effect<number, FrameWriteError>
  /** Sends a control frame, optionally about one device. */
  readonly control: (
    kind: ControlKind,
    options?: { readonly device?: number; readonly payload?: Uint8Array }
  ) => Effect.Effect<void, FrameWriteError>
  /** Sends the stream end with the totals, then ends the sink. Returns the stream end frame sent. */
  readonly end: Effect.Effect<StreamEnd, FrameWriteError>
  /** Bytes written so far, preamble included. */
  readonly offset: Effect.Effect<number>
}

/** A writer on `sink`; writes the preamble before it returns. */
export const make = Effect.fn("FrameWriter.make")(function* (sink: ByteSink, options: FrameWriterOptions = {}) {
  const maxFrameBytes = options.maxFrameBytes ?? DefaultMaxFrameBytes
  const chunkBytes = Math.max(
    1,
    Math.min(Math.floor(options.chunkBytes ?? 256 * 1024), maxFrameBytes - FrameHeaderBytes - ChunkPrefixBytes)
  )
  const sequence = new Sequence(options.peerManifest)
  const lock = yield* Semaphore.make(1)
  let offset = 0
  let broken: TransportError | undefined

  /** Writes whole encoded frames; after a transport failure the stream is unusable. */
  const send = (parts: ReadonlyArray<Uint8Array>, release?: () => void): Effect.Effect<void, TransportError> => {
    if (broken !== undefined) {
      release?.()
      return Effect.fail(broken)
    }
    let length = 0
    for (const part of parts) length += part.length
    offset += length
    return Effect.tapError(sink.write(parts, release), (error) =>
      Effect.sync(() => {
        broken ??= error
      })
    )
  }

  /** Encodes one frame at the current offset, refusing it if it breaks the format or the size bound. */
  const encode = (frame: Frame): Result.Result<ReadonlyArray<Uint8Array>, FormatError> =>
    Result.flatMap(encodeFrame(frame, offset), (parts) => {
      let length = 0
      for (const part of parts) length += part.length
      return length > maxFrameBytes
        ? Result.fail(FormatError.frameTooLarge({ offset, frameType: frame._tag, length, max: maxFrameBytes }))
        : Result.succeed(parts)
    })

  /** Checks the frame's placement, then encodes and sends it. */
  const emit = (frame: Frame, admit: () => FormatError | undefined): Effect.Effect<void, FrameWriteError> => {
    if (broken !== undefined) return Effect.fail(broken)
    const encoded = encode(frame)
    if (Result.isFailure(encoded)) return Effect.fail(encoded.failure)
    const refused = admit()
    return refused === undefined ? send(encoded.success) : Effect.fail(refused)
  }

  /**
   * A payload's frames, encoded and admitted in order, or why the format refuses them (every
   * piece is of the same device, so a refusal comes at the first).
   */
  const chunkParts = (device: number, payload: Uint8Array): Array<Uint8Array> | FrameWriteError => {
    const parts: Array<Uint8Array> = []
    let frameOffset = offset
    for (let at = 0; at < payload.length; at += chunkBytes) {
      const piece = payload.subarray(at, at + chunkBytes)
      const encoded = encodeFrame({ _tag: "Chunk", device, payload: piece }, frameOffset)
      if (Result.isFailure(encoded)) return encoded.failure
      const refused = sequence.chunk(device, piece.length, frameOffset)
      if (refused !== undefined) return refused
      for (const part of encoded.success) parts.push(part)
      frameOffset += FrameHeaderBytes + ChunkPrefixBytes + piece.length
    }
    return parts
  }

  const serialized = <A>(effect: Effect.Effect<A, FrameWriteError>) => Semaphore.withPermit(lock, effect)

  yield* send([encodePreamble()])

  const writer: FrameWriter = {
    manifest: (devices) =>
      serialized(
        Effect.suspend(() => {
          const frame: Manifest = { _tag: "Manifest", devices }
          return emit(frame, () => sequence.manifest(frame, offset))
        })
      ),
    chunk: (device, payload, release) =>
      serialized(
        Effect.suspend((): Effect.Effect<void, FrameWriteError> => {
          const parts = broken === undefined ? chunkParts(device, payload) : broken
          if (parts instanceof Error || parts.length === 0) {
            release?.()
            return parts instanceof Error ? Effect.fail(parts) : Effect.void
          }
          return send(parts, release)
        })
      ),
    endDevice: (device) =>
      serialized(
        Effect.suspend(() => {
          const bytes = sequence.bytesOf(device)
          return Effect.as(
            emit({ _tag: "DeviceEnd", device, bytes }, () => sequence.deviceEnd(device, bytes, offset)),
            bytes
          )
        })
      ),
    control: (kind, control = {}) =>
      serialized(
        Effect.suspend(() =>
          emit({ _tag: "Control", kind, device: control.device, payload: control.payload ?? new Uint8Array(0) }, () =>
            sequence.control(control.device, offset)
          )
        )
      ),
    end: serialized(
      Effect.suspend(() => {
        const frame: StreamEnd = { _tag: "StreamEnd", bytes: sequence.bytes, chunks: sequence.chunks }
        return emit(frame, () => sequence.streamEnd(frame.bytes, frame.chunks, offset)).pipe(
          Effect.andThen(sink.end),
          Effect.as(frame)
        )
      })
    ),
    offset: Effect.sync(() => offset)
  }
  return writer
})
