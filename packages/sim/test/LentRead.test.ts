import { describe, expect, it } from "@effect/vitest"
import { makeSimDevice, type SimDeviceConfig } from "@lockstep/sim"
import { Effect } from "effect"
import { pump, readAll, walk } from "./Transfer.js"

/** 16 pages of 64 bytes, the last one 42 bytes long. */
const small: SimDeviceConfig = { stateSize: 1002, pageSize: 64, dirtyBytesPerSecond: 0, arcLatencyMs: 0, seed: 7 }
/** Stream size of `small` by the saved-state format: header, 16 record headers and the bytes, trailer. */
const smallStream = 24 + 16 * 12 + 1002 + 12

describe("reads into a lent buffer (the port's `into`)", () => {
  it.effect("answer views of the lent buffer carrying the same stream as fresh reads, which a resume accepts", () =>
    Effect.gen(function* () {
      const source = yield* makeSimDevice("source", small)
      yield* walk(source, "STOP_COPY")
      const fresh = yield* readAll(source, 100)
      expect(fresh.length).toBe(smallStream)
      // A new saving session of the unchanged device, read through one buffer lent again and again.
      yield* walk(source, "STOP")
      yield* walk(source, "STOP_COPY")
      const lent = new Uint8Array(100)
      const destination = yield* makeSimDevice("destination", { ...small, seed: 8 })
      yield* walk(destination, "RESUMING")
      const copies: Array<number> = []
      for (;;) {
        const r = yield* source.read(100, lent)
        if (r._tag !== "Chunk") break
        expect(r.data.buffer).toBe(lent.buffer)
        expect(r.data.byteOffset).toBe(0)
        copies.push(...r.data)
        // Written at once, before the buffer is lent again.
        yield* destination.write(r.data)
      }
      expect(Uint8Array.from(copies)).toEqual(fresh)
      // RESUMING → STOP checks every page's checksum and the trailer.
      yield* destination.setState("STOP")
    })
  )

  it.effect("a lent buffer shorter than the read is not used: the chunk is a buffer of its own", () =>
    Effect.gen(function* () {
      const source = yield* makeSimDevice("source", small)
      yield* walk(source, "STOP_COPY")
      const short = new Uint8Array(10)
      const r = yield* source.read(100, short)
      expect(r._tag).toBe("Chunk")
      if (r._tag !== "Chunk") return
      expect(r.data.buffer).not.toBe(short.buffer)
      expect(r.data.length).toBe(100)
      expect(short).toEqual(new Uint8Array(10))
      // The rest of the stream still follows in order.
      const destination = yield* makeSimDevice("destination", { ...small, seed: 8 })
      yield* walk(destination, "RESUMING")
      yield* destination.write(r.data)
      expect(yield* pump(source, destination, 64)).toBe(smallStream - 100)
      yield* destination.setState("STOP")
    })
  )
})
