import { createRequire } from "node:module"
import { crc32 as zlibCrc32 } from "node:zlib"

/**
 * CRC-32 (the IEEE 802.3 / zlib polynomial) of `data`, continuing from `initial` (the CRC of
 * the bytes before it; 0 to start): `crc32(b, crc32(a))` is the CRC of `a` then `b`.
 */
export type Crc32 = (data: Uint8Array, initial?: number) => number

/** Which implementation computes the stream's checksums. */
export type Crc32Implementation = "native" | "zlib"

/** What `@node-rs/crc32` exports, as far as the stream uses it. */
interface NativeCrc32 {
  readonly crc32: (input: Uint8Array, initialState?: number) => number
}

const isNative = (module: unknown): module is NativeCrc32 =>
  typeof module === "object" && module !== null && "crc32" in module && typeof module.crc32 === "function"

/**
 * The checksum function from what `load` answers: `@node-rs/crc32` (a SIMD CRC, the same
 * polynomial as zlib, about twice as fast) when it loads and works, else `zlib.crc32`. The
 * native package is optional at run time: a platform without its prebuilt binary, or a
 * failed load, falls back without an error.
 */
export const selectCrc32 = (
  load: () => unknown
): { readonly crc32: Crc32; readonly implementation: Crc32Implementation } => {
  try {
    const module = load()
    // A binary that loads but computes something else must not be trusted with the format.
    if (isNative(module) && module.crc32(probe, 0) === zlibCrc32(probe, 0)) {
      const native = module.crc32
      return { crc32: (data, initial = 0) => native(data, initial), implementation: "native" }
    }
  } catch {
    // No binary for this platform, or it failed to load: zlib it is.
  }
  return { crc32: (data, initial = 0) => zlibCrc32(data, initial), implementation: "zlib" }
}

const probe = new TextEncoder().encode("lockstep crc32 probe")

const selected = selectCrc32(() => createRequire(import.meta.url)("@node-rs/crc32"))

/** The stream's CRC-32: `@node-rs/crc32` when it loads, `zlib.crc32` otherwise. */
export const crc32: Crc32 = selected.crc32

/** Which implementation `crc32` is. */
export const crc32Implementation: Crc32Implementation = selected.implementation
