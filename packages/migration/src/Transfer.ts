import type { Device, DeviceError, PrecopyInfo } from "@lockstep/device"
import type { FrameWriter } from "@lockstep/stream"
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
    let bytes = 0
    while (bytes < budget && !stopping()) {
      const read = yield* device.read(Math.min(chunkBytes, budget - bytes))
      if (read._tag === "NoData") return { bytes, dry: true }
      if (read._tag === "End")
        return yield* new DeviceMisbehaved({ device: device.id, reason: "a pre-copy read answered End" })
      yield* pace.pace(read.data.length)
      yield* writer.chunk(index, read.data)
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
    let bytes = 0
    while (!stopping()) {
      const read = yield* device.read(chunkBytes)
      if (read._tag === "End") {
        yield* writer.endDevice(index)
        return bytes
      }
      if (read._tag === "NoData")
        return yield* new DeviceMisbehaved({ device: device.id, reason: "a STOP_COPY read answered NoData" })
      yield* pace.pace(read.data.length)
      yield* writer.chunk(index, read.data)
      bytes += read.data.length
    }
    return bytes
  })
