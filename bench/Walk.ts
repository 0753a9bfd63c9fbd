import type { Device, DeviceError } from "@lockstep/device"
import { path, type State } from "@lockstep/fsm"
import { Effect, Result } from "effect"

/**
 * Walks one device to `to` along its kernel path, one arc at a time, with no group around it:
 * how the stream benchmark arms devices that have no peers to order against.
 */
export const walkTo = (device: Device, to: State): Effect.Effect<void, DeviceError> =>
  Effect.gen(function* () {
    const from = yield* device.getState
    if (from === to) return
    const steps = path(from, to, device.flags)
    if (Result.isFailure(steps)) return yield* Effect.die(steps.failure)
    for (const next of steps.success.slice(1)) yield* device.setState(next)
  })
