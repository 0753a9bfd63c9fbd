import { describe, expect, it } from "@effect/vitest"
import type { Device } from "@lockstep/device"
import { path, type State } from "@lockstep/fsm"
import { makeSimDevice, type SimDeviceConfig } from "@lockstep/sim"
import { type ByteSink, FrameWriter } from "@lockstep/stream"
import { Effect, Result } from "effect"
import { throttle } from "../src/Bandwidth.js"
import { drainDevice } from "../src/Transfer.js"
import { framesOf } from "./Harness.js"

/** 16 pages of 4 KiB, the last one shorter: reads of `readBytes` cut records anywhere. */
const config: SimDeviceConfig = { stateSize: 16 * 4096 - 900, pageSize: 4096, dirtyBytesPerSecond: 0, arcLatencyMs: 0 }
const readBytes = 3000

/**
 * A sink whose writes complete at once but whose bytes leave `lag` writes later: only then are
 * they copied out (what the peer receives) and the write's `release` called. A sender that
 * refilled a buffer when the write completed, before its release, would send the refill.
 */
const lateSink = (lag: number) => {
  const pending: Array<{ readonly chunks: ReadonlyArray<Uint8Array>; readonly release: (() => void) | undefined }> = []
  const received: Array<Uint8Array> = []
  /** Every chunk handed over, as it was handed (views, not copies). */
  const handed: Array<Uint8Array> = []
  const flush = (keep: number) => {
    while (pending.length > keep) {
      const write = pending.shift()
      if (write === undefined) return
      for (const chunk of write.chunks) received.push(chunk.slice())
      write.release?.()
    }
  }
  const sink: ByteSink = {
    write: (chunks, release) =>
      Effect.sync(() => {
        handed.push(...chunks)
        pending.push({ chunks, release })
        flush(lag)
      }),
    end: Effect.sync(() => flush(0))
  }
  return { sink, received, handed }
}

/** Walks `device` to `to` along the kernel's path, one arc at a time. */
const walk = (device: Device, to: State) =>
  Effect.gen(function* () {
    const steps = path(yield* device.getState, to, device.flags)
    if (Result.isFailure(steps)) return yield* Effect.die(new Error(`no path to ${to}`))
    for (const next of steps.success.slice(1)) yield* device.setState(next)
  })

/** What `device` sends until `End`, read with fresh buffers. */
const readAll = (device: Device) =>
  Effect.gen(function* () {
    const parts: Array<Uint8Array> = []
    for (;;) {
      const r = yield* device.read(readBytes)
      if (r._tag !== "Chunk") return concat(parts)
      parts.push(r.data)
    }
  })

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** A device's whole STOP_COPY stream read with fresh buffers, then a new session opened for the drain. */
const expectedStream = (device: Device) =>
  Effect.gen(function* () {
    yield* walk(device, "STOP_COPY")
    const bytes = yield* readAll(device)
    yield* walk(device, "STOP")
    yield* walk(device, "STOP_COPY")
    return bytes
  })

describe("drainDevice with recycled read buffers", () => {
  it.effect(
    "sends every device's bytes as read, even when the socket writes them out long after the write completed",
    () =>
      Effect.gen(function* () {
        const devices = [
          yield* makeSimDevice("a", { ...config, seed: 1 }),
          yield* makeSimDevice("b", { ...config, seed: 2 })
        ]
        const expected = yield* Effect.forEach(devices, expectedStream)
        const { sink, received, handed } = lateSink(5)
        const writer = yield* FrameWriter.make(sink, { chunkBytes: 1000 })
        yield* writer.manifest(
          devices.map((d) => ({ id: d.id, kind: "pci", flags: d.flags, compat: new Uint8Array(0) }))
        )
        const sent = yield* Effect.forEach(
          devices,
          (device, i) => drainDevice(device, i, writer, throttle(Infinity), readBytes, () => false),
          { concurrency: "unbounded" }
        )
        yield* writer.end

        // By the format: each device's bytes are its chunk payloads in order, its end marker
        // declares their total, and the stream end declares the sum.
        const frames = framesOf(received)
        const payloads = devices.map(() => [] as Array<Uint8Array>)
        const ends = devices.map(() => -1)
        for (const frame of frames) {
          if (frame._tag === "Chunk") {
            expect(ends[frame.device]).toBe(-1)
            payloads[frame.device]?.push(frame.payload)
          }
          if (frame._tag === "DeviceEnd") ends[frame.device] = frame.bytes
        }
        for (const [i, bytes] of expected.entries()) {
          expect(concat(payloads[i] ?? [])).toEqual(bytes)
          expect(ends[i]).toBe(bytes.length)
          expect(sent[i]).toBe(bytes.length)
        }
        const last = frames.at(-1)
        const total = expected.reduce((n, bytes) => n + bytes.length, 0)
        expect(last?._tag === "StreamEnd" && last.bytes).toBe(total)

        // The buffers were recycled: the payloads of the reads came from fewer buffers than reads.
        const payloadViews = handed.filter((chunk) => chunk.buffer.byteLength === readBytes)
        const reads = expected.reduce((n, bytes) => n + Math.ceil(bytes.length / readBytes), 0)
        expect(payloadViews.length).toBeGreaterThanOrEqual(reads)
        expect(new Set(payloadViews.map((v) => v.buffer)).size).toBeLessThan(reads)
      })
  )
})
