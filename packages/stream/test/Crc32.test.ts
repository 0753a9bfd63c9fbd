import { createRequire } from "node:module"
import { crc32 as zlibCrc32 } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import { crc32, crc32Implementation, selectCrc32 } from "@lockstep/stream"
import * as fc from "fast-check"

/** The CRC-32 check value: the CRC of the ASCII digits "123456789" (IEEE 802.3 / zlib polynomial). */
const checkInput = new TextEncoder().encode("123456789")
const checkValue = 0xcbf43926

const native = createRequire(import.meta.url)("@node-rs/crc32") as {
  readonly crc32: (input: Uint8Array, initialState?: number) => number
}

describe("Crc32", () => {
  it("loads the native package on this platform (its prebuilt binary is installed)", () => {
    expect(crc32Implementation).toBe("native")
  })

  it("gives the standard check value, native and zlib alike", () => {
    expect(crc32(checkInput)).toBe(checkValue)
    expect(native.crc32(checkInput, 0)).toBe(checkValue)
    expect(zlibCrc32(checkInput)).toBe(checkValue)
  })

  it("agrees with zlib.crc32 on random inputs, views and running values", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 70_000 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (bytes, from, length, initial) => {
          // A view at an arbitrary offset of a larger buffer, as the decoder passes them.
          const start = bytes.length === 0 ? 0 : from % bytes.length
          const view = bytes.subarray(start, start + length)
          expect(native.crc32(view, initial)).toBe(zlibCrc32(view, initial))
          expect(crc32(view, initial)).toBe(zlibCrc32(view, initial))
          expect(crc32(bytes)).toBe(zlibCrc32(bytes))
        }
      ),
      { numRuns: 300 }
    )
  })

  it("continues from a running value: the CRC of a split input is the CRC of the whole", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat(), (bytes, cut) => {
        const at = bytes.length === 0 ? 0 : cut % bytes.length
        expect(crc32(bytes.subarray(at), crc32(bytes.subarray(0, at)))).toBe(zlibCrc32(bytes))
      })
    )
  })

  describe("fallback to zlib.crc32", () => {
    it("when the native package cannot load", () => {
      const selected = selectCrc32(() => {
        throw new Error("Cannot find module '@node-rs/crc32-linux-x64-gnu'")
      })
      expect(selected.implementation).toBe("zlib")
      expect(selected.crc32(checkInput)).toBe(checkValue)
      const bytes = new Uint8Array(4096).map((_, i) => (i * 37) & 0xff)
      expect(selected.crc32(bytes.subarray(100), selected.crc32(bytes.subarray(0, 100)))).toBe(zlibCrc32(bytes))
    })

    it("when what loads is not a CRC-32 function", () => {
      expect(selectCrc32(() => ({})).implementation).toBe("zlib")
      expect(selectCrc32(() => undefined).implementation).toBe("zlib")
    })

    it("when what loads computes another checksum (CRC-32C)", () => {
      const selected = selectCrc32(() => ({ crc32: (native as unknown as { crc32c: typeof native.crc32 }).crc32c }))
      expect(selected.implementation).toBe("zlib")
      expect(selected.crc32(checkInput)).toBe(checkValue)
    })

    it("not when the native package loads", () => {
      const selected = selectCrc32(() => native)
      expect(selected.implementation).toBe("native")
      expect(selected.crc32(checkInput)).toBe(checkValue)
    })
  })
})
