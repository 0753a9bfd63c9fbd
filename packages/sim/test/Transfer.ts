import type { Device, DeviceError } from "@lockstep/device"
import { path, type State } from "@lockstep/fsm"
import { Effect, Result } from "effect"

/** Walks `device` to `to` along the kernel's path, one arc at a time. */
export const walk = (device: Device, to: State): Effect.Effect<void, DeviceError | string> =>
  Effect.gen(function* () {
    const from = yield* device.getState
    if (from === to) return
    const steps = path(from, to, device.flags)
    if (Result.isFailure(steps)) return yield* Effect.fail(`no path ${from} → ${to}: ${steps.failure._tag}`)
    for (const next of steps.success.slice(1)) yield* device.setState(next)
  })

/**
 * Moves what `source` has to give now into `destination`, `chunk` bytes at a time: in pre-copy
 * until `NoData`, in STOP_COPY until `End`. Answers the bytes moved.
 */
export const pump = (source: Device, destination: Device, chunk: number): Effect.Effect<number, DeviceError> =>
  Effect.gen(function* () {
    let moved = 0
    for (;;) {
      const r = yield* source.read(chunk)
      if (r._tag !== "Chunk") return moved
      moved += r.data.length
      yield* destination.write(r.data)
    }
  })

/** Everything `source` sends until it stops giving, concatenated. */
export const readAll = (source: Device, chunk: number): Effect.Effect<Uint8Array, DeviceError> =>
  Effect.gen(function* () {
    const parts: Array<Uint8Array> = []
    for (;;) {
      const r = yield* source.read(chunk)
      if (r._tag !== "Chunk") break
      parts.push(r.data)
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
    let at = 0
    for (const p of parts) {
      out.set(p, at)
      at += p.length
    }
    return out
  })
