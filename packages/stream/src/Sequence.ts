import { FormatError } from "./FormatError.js"
import type { FrameType, Manifest } from "./Frame.js"

/** How far a stream has got. */
type Phase = "open" | "manifested" | "ended"

/**
 * Where each frame type may appear: `true`, or the reason it may not. The manifest comes at
 * most once and before any device data; control frames may come anywhere before the end;
 * the stream end may close a stream without a manifest (the destination's control channel).
 */
const placement: Readonly<Record<Phase, Readonly<Record<FrameType, true | string>>>> = {
  open: {
    Manifest: true,
    Chunk: "device data before the manifest",
    DeviceEnd: "device end marker before the manifest",
    Control: true,
    StreamEnd: true
  },
  manifested: { Manifest: "a second manifest", Chunk: true, DeviceEnd: true, Control: true, StreamEnd: true },
  ended: {
    Manifest: "after the stream end",
    Chunk: "after the stream end",
    DeviceEnd: "after the stream end",
    Control: "after the stream end",
    StreamEnd: "after the stream end"
  }
}

/**
 * The ordering rules of a stream, kept by the decoder for what it reads and by the writer
 * for what it writes, so both refuse the same streams for the same reasons.
 */
export class Sequence {
  private phase: Phase = "open"
  private ids: ReadonlyArray<string> = []
  private deviceBytes: Array<number> = []
  private ended: Array<boolean> = []
  private totalBytes = 0
  private totalChunks = 0

  /** `peer`: the manifest of the opposite direction, naming the devices of control frames when this stream has none. */
  constructor(private readonly peer: Manifest | undefined) {}

  /** Whether a frame of this type may come next. */
  place(frameType: FrameType, offset: number): FormatError | undefined {
    const allowed = placement[this.phase][frameType]
    return allowed === true ? undefined : FormatError.frameOutOfOrder({ offset, frameType, reason: allowed })
  }

  /** Sum of all chunk payload bytes so far. */
  get bytes(): number {
    return this.totalBytes
  }

  /** Number of chunks so far. */
  get chunks(): number {
    return this.totalChunks
  }

  /** Bytes received so far for one device (0 for an unknown index). */
  bytesOf(device: number): number {
    return this.deviceBytes[device] ?? 0
  }

  /** Admits the manifest, or says why it is out of place. */
  manifest(manifest: Manifest, offset: number): FormatError | undefined {
    const misplaced = this.place("Manifest", offset)
    if (misplaced !== undefined) return misplaced
    this.phase = "manifested"
    this.ids = manifest.devices.map((d) => d.id)
    this.deviceBytes = this.ids.map(() => 0)
    this.ended = this.ids.map(() => false)
    return undefined
  }

  /** Admits `length` payload bytes of `device`, or says why they may not come. */
  chunk(device: number, length: number, offset: number): FormatError | undefined {
    const error = this.place("Chunk", offset) ?? this.known("Chunk", device, offset)
    if (error !== undefined) return error
    if (this.ended[device] === true) {
      return FormatError.chunkAfterDeviceEnd({ offset, device, deviceId: this.idOf(device) })
    }
    this.deviceBytes[device] = this.bytesOf(device) + length
    this.totalBytes += length
    this.totalChunks += 1
    return undefined
  }

  /** Admits the end marker of `device` declaring `bytes`, or says what is wrong with it. */
  deviceEnd(device: number, bytes: number, offset: number): FormatError | undefined {
    const error = this.place("DeviceEnd", offset) ?? this.known("DeviceEnd", device, offset)
    if (error !== undefined) return error
    const deviceId = this.idOf(device)
    if (this.ended[device] === true) return FormatError.duplicateDeviceEnd({ offset, device, deviceId })
    const received = this.bytesOf(device)
    if (bytes !== received)
      return FormatError.deviceTotalMismatch({ offset, device, deviceId, declared: bytes, received })
    this.ended[device] = true
    return undefined
  }

  /** Admits a control frame about `device` (if any), or says why it may not come. */
  control(device: number | undefined, offset: number): FormatError | undefined {
    const misplaced = this.place("Control", offset)
    if (misplaced !== undefined || device === undefined) return misplaced
    const devices = this.phase === "open" ? (this.peer?.devices.length ?? 0) : this.ids.length
    return device < devices ? undefined : FormatError.unknownDevice({ offset, frameType: "Control", device, devices })
  }

  /** Admits the stream end declaring these totals, or says what is wrong with it. */
  streamEnd(bytes: number, chunks: number, offset: number): FormatError | undefined {
    const misplaced = this.place("StreamEnd", offset)
    if (misplaced !== undefined) return misplaced
    const open = this.ids.filter((_, i) => this.ended[i] !== true)
    if (open.length > 0) return FormatError.deviceNotEnded({ offset, deviceIds: open })
    if (bytes !== this.totalBytes) {
      return FormatError.streamTotalsMismatch({ offset, field: "bytes", declared: bytes, counted: this.totalBytes })
    }
    if (chunks !== this.totalChunks) {
      return FormatError.streamTotalsMismatch({ offset, field: "chunks", declared: chunks, counted: this.totalChunks })
    }
    this.phase = "ended"
    return undefined
  }

  private known(frameType: FrameType, device: number, offset: number): FormatError | undefined {
    return device < this.ids.length
      ? undefined
      : FormatError.unknownDevice({ offset, frameType, device, devices: this.ids.length })
  }

  private idOf(device: number): string {
    return this.ids[device] ?? `#${device}`
  }
}
