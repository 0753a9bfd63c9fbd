import type { Device, DeviceError, PrecopyInfo, ReadResult } from "@lockstep/device"
import { BufferPool, type FrameWriter } from "@lockstep/stream"
import { Effect } from "effect"
import type { Throttle } from "./Bandwidth.js"
import { DeviceMisbehaved } from "./MigrationError.js"

/** Error codes by which a backend says it has no such operation (vfio-user has no PRE_COPY info). */
const unsupported: ReadonlySet<string> = new Set(["EOPNOTSUPP", "ENOTSUP", "ENOTTY", "ENOSYS"])

/** Whether a device error's code says the backend has no such operation at all. */
export const isUnsupported = (code: string): boolean => unsupported.has(code)

/** Pre-copy progress, or `undefined` where the backend cannot report it: that is no progress to go by, not a failure. */
export const precopyProgress = (device: Device): Effect.Effect<PrecopyInfo | undefined, DeviceError> =>
  device.precopyInfo.pipe(
    Effect.catchReason("DeviceError", "SessionFailed", (reason, error) =>
      unsupported.has(reason.code) ? Effect.succeed(undefined) : Effect.fail(error)
    )
  )

/**
 * The read buffers of one writer: devices read into buffers lent from it, and a buffer comes
 * back only when the sink write carrying it has released it (see `BufferPool`), never when
 * `writer.chunk` completes. One pool per writer, sized by its first caller's chunk size.
 */
const pools = new WeakMap<FrameWriter.FrameWriter, BufferPool>()

/** Idle buffers a writer's pool keeps: enough for the reads in flight and those queued on the socket. */
const pooledBuffers = 16

const poolOf = (writer: FrameWriter.FrameWriter, chunkBytes: number): BufferPool => {
  const existing = pools.get(writer)
  if (existing !== undefined && existing.size >= chunkBytes) return existing
  const pool = new BufferPool(chunkBytes, pooledBuffers)
  pools.set(writer, pool)
  return pool
}

/**
 * Reads into a buffer lent from `pool`. A chunk comes with the release that returns the buffer
 * (to pass to `writer.chunk`); anything else, or a chunk in a buffer of the device's own, gives
 * it back at once.
 */
const readLent = (
  device: Device,
  maxBytes: number,
  pool: BufferPool
): Effect.Effect<readonly [ReadResult, () => void], DeviceError> => {
  const buffer = pool.take()
  return Effect.map(device.read(maxBytes, buffer), (read) => {
    if (read._tag === "Chunk" && read.data.buffer === buffer.buffer) return [read, pool.releaser(buffer)] as const
    pool.give(buffer)
    return [read, noRelease] as const
  })
}

const noRelease = (): void => {}

/** Why a device's data could not be sent: the device, or the frame writer (format or channel). */
export type SendError = DeviceError | DeviceMisbehaved | FrameWriter.FrameWriteError

/** What one pre-copy pump of a device did. */
export interface Pumped {
  readonly bytes: number
  /** The device answered `NoData`: nothing more to read for now. */
  readonly dry: boolean
}

/**
 * Sends what a device in pre-copy has to give now, at most `budget` bytes, chunk by chunk at
 * the throttle's pace. Stops at `NoData`, at the budget, or (between chunks) once `stopping()`
 * says so: a chunk once begun is always written whole, so the writer stays usable.
 */
export const pumpPrecopy = (
  device: Device,
  index: number,
  writer: FrameWriter.FrameWriter,
  pace: Throttle,
  chunkBytes: number,
  budget: number,
  stopping: () => boolean
): Effect.Effect<Pumped, SendError> =>
  Effect.gen(function* () {
    const pool = poolOf(writer, chunkBytes)
    let bytes = 0
    while (bytes < budget && !stopping()) {
      const [read, release] = yield* readLent(device, Math.min(chunkBytes, budget - bytes), pool)
      if (read._tag === "NoData") return { bytes, dry: true }
      if (read._tag === "End")
        return yield* new DeviceMisbehaved({ device: device.id, reason: "a pre-copy read answered End" })
      yield* pace.pace(read.data.length)
      yield* writer.chunk(index, read.data, release)
      bytes += read.data.length
    }
    return { bytes, dry: false }
  })

/**
 * Reads a device in STOP_COPY until `End`, sending every chunk at the throttle's pace, then its
 * end marker. Answers the bytes sent. Stops early, between chunks, once `stopping()` says so.
 */
export const drainDevice = (
  device: Device,
  index: number,
  writer: FrameWriter.FrameWriter,
  pace: Throttle,
  chunkBytes: number,
  stopping: () => boolean
): Effect.Effect<number, SendError> =>
  Effect.gen(function* () {
    const pool = poolOf(writer, chunkBytes)
    let bytes = 0
    while (!stopping()) {
      const [read, release] = yield* readLent(device, chunkBytes, pool)
      if (read._tag === "End") {
        yield* writer.endDevice(index)
        return bytes
      }
      if (read._tag === "NoData")
        return yield* new DeviceMisbehaved({ device: device.id, reason: "a STOP_COPY read answered NoData" })
      yield* pace.pace(read.data.length)
      yield* writer.chunk(index, read.data, release)
      bytes += read.data.length
    }
    return bytes
  })
