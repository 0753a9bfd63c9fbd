/*
 * Streams for tests: random valid frame sequences ("plans"), their bytes, and a synchronous
 * decode of bytes pushed in given slices.
 */
import { DeviceKinds } from "@lockstep/device"
import {
  type ControlKind,
  ControlKindCode,
  encodeFrame,
  encodePreamble,
  type FormatError,
  type Frame,
  type Manifest,
  makeDecoder
} from "@lockstep/stream"
import { Result } from "effect"
import * as fc from "fast-check"

const controlKinds = Object.keys(ControlKindCode) as Array<ControlKind>

/** A manifest of 1 to `max` devices with distinct ids. */
export const manifestArb = (max = 5): fc.Arbitrary<Manifest> =>
  fc
    .uniqueArray(fc.string({ minLength: 1, maxLength: 12, unit: "grapheme" }), {
      minLength: 1,
      maxLength: max
    })
    .chain((ids) =>
      fc.tuple(
        ...ids.map((id) =>
          fc.record({
            id: fc.constant(id),
            kind: fc.constantFrom(...DeviceKinds),
            flags: fc.integer({ min: 0, max: 7 }),
            compat: fc.uint8Array({ maxLength: 24 })
          })
        )
      )
    )
    .map((devices) => ({ _tag: "Manifest", devices }))

/** A frame without its place in a plan yet. */
type Step =
  | { readonly chunk: number; readonly payload: Uint8Array }
  | { readonly control: ControlKind; readonly device: number | undefined; readonly payload: Uint8Array }

/**
 * A valid stream: a manifest, then chunks of all devices interleaved at random with control
 * frames, each device's end marker somewhere after its last chunk, and the stream end.
 */
export const planArb = (options: { readonly maxPayload?: number; readonly maxSteps?: number } = {}) =>
  manifestArb().chain((manifest) => {
    const devices = manifest.devices.length
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          chunk: fc.nat(devices - 1),
          payload: fc.uint8Array({ maxLength: options.maxPayload ?? 64 })
        })
      },
      {
        weight: 1,
        arbitrary: fc.record({
          control: fc.constantFrom(...controlKinds),
          device: fc.option(fc.nat(devices - 1), { nil: undefined }),
          payload: fc.uint8Array({ maxLength: 16 })
        })
      }
    )
    return fc
      .tuple(
        fc.array(step, { maxLength: options.maxSteps ?? 30 }),
        fc.array(fc.nat(), { minLength: devices, maxLength: devices })
      )
      .map(([steps, endSeeds]) => framesOf(manifest, steps, endSeeds))
  })

const framesOf = (manifest: Manifest, steps: ReadonlyArray<Step>, endSeeds: ReadonlyArray<number>): Array<Frame> => {
  const body: Array<Frame> = steps.map((s) =>
    "chunk" in s
      ? { _tag: "Chunk", device: s.chunk, payload: s.payload }
      : { _tag: "Control", kind: s.control, device: s.device, payload: s.payload }
  )
  const totals = manifest.devices.map(() => 0)
  // Insert each device's end after its last chunk, at a seeded position; later devices first
  // so that earlier insertion points stay valid.
  const ends: Array<{ at: number; device: number }> = manifest.devices.map((_, device) => {
    let last = -1
    body.forEach((f, i) => {
      if (f._tag === "Chunk" && f.device === device) last = i
    })
    const room = body.length - last
    return { at: last + 1 + ((endSeeds[device] ?? 0) % room), device }
  })
  for (const f of body) if (f._tag === "Chunk") totals[f.device] = (totals[f.device] ?? 0) + f.payload.length
  ends.sort((a, b) => b.at - a.at || b.device - a.device)
  for (const { at, device } of ends) body.splice(at, 0, { _tag: "DeviceEnd", device, bytes: totals[device] ?? 0 })
  const bytes = totals.reduce((a, b) => a + b, 0)
  const chunks = body.filter((f) => f._tag === "Chunk").length
  return [manifest, ...body, { _tag: "StreamEnd", bytes, chunks }]
}

/** The bytes of a preamble followed by `frames`, encoded without any ordering check. */
export const bytesOf = (frames: ReadonlyArray<Frame>): Uint8Array => {
  const parts: Array<Uint8Array> = [encodePreamble()]
  let offset = parts[0]?.length ?? 0
  for (const frame of frames) {
    for (const part of Result.getOrThrow(encodeFrame(frame, offset))) {
      parts.push(part)
      offset += part.length
    }
  }
  return Buffer.concat(parts)
}

/** What a decode of pushed slices produced: the frames, and the error or completion. */
export interface Decoded {
  readonly frames: Array<Frame>
  readonly error: FormatError | undefined
  readonly complete: boolean
}

/** Pushes `bytes` cut at `cuts`, pulling frames after every push, then ends the input. */
export const decodeSlices = (bytes: Uint8Array, cuts: ReadonlyArray<number> = [], options = {}): Decoded => {
  const decoder = makeDecoder(options)
  const frames: Array<Frame> = []
  const drain = (): FormatError | undefined => {
    for (;;) {
      const result = decoder.next()
      if (Result.isFailure(result)) return result.failure
      if (result.success === undefined) return undefined
      frames.push(result.success)
    }
  }
  const points = [...new Set(cuts.map((c) => Math.min(Math.max(c, 0), bytes.length)))].sort((a, b) => a - b)
  let from = 0
  for (const to of [...points, bytes.length]) {
    // Copies, so that a view never reaches past its slice into bytes pushed later.
    decoder.push(bytes.slice(from, to))
    from = to
    const error = drain()
    if (error !== undefined) return { frames, error, complete: false }
  }
  decoder.end()
  const error = drain()
  return { frames, error, complete: decoder.complete }
}

/**
 * Frames as a flat list to compare: each chunk becomes one entry per payload byte, so a chunk
 * frame the decoder returned in several pieces compares equal to the frame that was encoded.
 */
export const exploded = (frames: ReadonlyArray<Frame>): Array<unknown> =>
  frames.flatMap((frame) =>
    frame._tag === "Chunk" ? Array.from(frame.payload, (byte) => `chunk ${frame.device}: ${byte}`) : [comparable(frame)]
  )

/** A frame with its byte fields as hex strings, for deep equality across Buffer and Uint8Array. */
export const comparable = (frame: Frame): unknown => {
  const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
  switch (frame._tag) {
    case "Manifest":
      return { ...frame, devices: frame.devices.map((d) => ({ ...d, compat: hex(d.compat) })) }
    case "Chunk":
    case "Control":
      return { ...frame, payload: hex(frame.payload) }
    default:
      return frame
  }
}
