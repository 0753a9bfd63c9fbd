import type { DeviceKind } from "@lockstep/device"
import type { Flags } from "@lockstep/fsm"
import { Schema } from "effect"

/*
 * The migration stream, version 1 (FORMAT.md is the full reference).
 *
 *   stream   = preamble frame*
 *   preamble = magic[8] version:u32 crc32:u32                                (16 bytes)
 *   frame    = type:u8 reserved[3] length:u32 bodyCrc:u32 headerCrc:u32 body[length]
 *
 * Everything is little-endian. The header CRC covers header bytes 0..11, so a length is
 * trusted only once its own checksum and the configured maximum frame size both agree.
 */

/** The 8 bytes every stream starts with: ASCII `LOCKSTEP`. */
export const Magic: Uint8Array = new Uint8Array([0x4c, 0x4f, 0x43, 0x4b, 0x53, 0x54, 0x45, 0x50])

/** The format version this package writes. */
export const FormatVersion = 1

/** The format versions this package reads. */
export const SupportedVersions: ReadonlyArray<number> = [1]

/** Size of the preamble: magic, version, CRC32. */
export const PreambleBytes = 16

/** Size of every frame header: type, reserved, body length, body CRC32, header CRC32. */
export const FrameHeaderBytes = 16

/** Size of the device index that starts a chunk body. */
export const ChunkPrefixBytes = 4

/** Largest chunk payload a default reader accepts. */
export const DefaultMaxChunkBytes = 1024 * 1024

/** Default bound on a whole frame (header and body): a 1 MiB chunk plus its header and prefix. */
export const DefaultMaxFrameBytes = FrameHeaderBytes + ChunkPrefixBytes + DefaultMaxChunkBytes

/** Most devices a manifest may list. */
export const MaxDevices = 1024

/** Longest device id, in UTF-8 bytes (ids are never empty). */
export const MaxDeviceIdBytes = 255

/** Largest compatibility blob of one device. */
export const MaxCompatBytes = 64 * 1024

/** Largest control frame payload. */
export const MaxControlPayloadBytes = 64 * 1024

/** The device field of a control frame that concerns no particular device. */
export const NoDevice = 0xffff_ffff

/** The frame kinds. */
export const FrameTypeSchema = Schema.Literals(["Manifest", "Chunk", "DeviceEnd", "Control", "StreamEnd"])

/** The frame kinds. */
export type FrameType = typeof FrameTypeSchema.Type

/** Wire code of each frame type. 0 is never valid, so zeroed memory never parses as a frame. */
export const FrameTypeCode: Readonly<Record<FrameType, number>> = {
  Manifest: 1,
  Chunk: 2,
  DeviceEnd: 3,
  Control: 4,
  StreamEnd: 5
}

/** The frame type of a wire code, if it is one. */
export const frameTypeOfCode = (code: number): FrameType | undefined => frameTypeByCode[code]

const frameTypeByCode: ReadonlyArray<FrameType | undefined> = invert(FrameTypeCode)

/**
 * Body length bounds per frame type, before the configured maximum frame size applies.
 * A header whose length is outside them is rejected before its body is read.
 */
export const BodyLength: Readonly<Record<FrameType, { readonly min: number; readonly max: number }>> = {
  Manifest: { min: 4 + 8 + 1, max: 0xffff_ffff },
  Chunk: { min: ChunkPrefixBytes, max: 0xffff_ffff },
  DeviceEnd: { min: 12, max: 12 },
  Control: { min: 8, max: 8 + MaxControlPayloadBytes },
  StreamEnd: { min: 16, max: 16 }
}

/** Wire code of each device kind (the manifest's `kind` byte). */
export const DeviceKindCode: Readonly<Record<DeviceKind, number>> = { pci: 1, mdev: 2, ccw: 3, ap: 4 }

/** The device kind of a wire code, if it is one. */
export const deviceKindOfCode = (code: number): DeviceKind | undefined => deviceKindByCode[code]

const deviceKindByCode: ReadonlyArray<DeviceKind | undefined> = invert(DeviceKindCode)

/**
 * What a control frame says. Control frames travel in either direction:
 * - `accept` / `refuse`: the destination's answer to the manifest (handshake);
 * - `switchover-ack`: the destination has the initial data of `device`;
 * - `commit`: the destination runs the migrated group; the source stays stopped;
 * - `abort`: either side gives up; the source rolls back, the destination resets;
 * - `error`: a failure report (payload: UTF-8 text or JSON), optionally about `device`.
 */
export type ControlKind = "accept" | "refuse" | "switchover-ack" | "commit" | "abort" | "error"

/** Wire code of each control kind. */
export const ControlKindCode: Readonly<Record<ControlKind, number>> = {
  accept: 1,
  refuse: 2,
  "switchover-ack": 3,
  commit: 4,
  abort: 5,
  error: 6
}

/** The control kind of a wire code, if it is one. */
export const controlKindOfCode = (code: number): ControlKind | undefined => controlKindByCode[code]

const controlKindByCode: ReadonlyArray<ControlKind | undefined> = invert(ControlKindCode)

/** One device of a manifest. Its index in the manifest is how chunks and end markers name it. */
export interface ManifestDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: Flags
  /** Opaque compatibility data from the backend (at most `MaxCompatBytes`). */
  readonly compat: Uint8Array
}

/** The devices whose state the stream carries; sent once, before any chunk. */
export interface Manifest {
  readonly _tag: "Manifest"
  readonly devices: ReadonlyArray<ManifestDevice>
}

/** Bytes of one device's state, in order. Chunks of different devices interleave freely. */
export interface Chunk {
  readonly _tag: "Chunk"
  /** Index of the device in the manifest. */
  readonly device: number
  /** The bytes; a view into the received buffer unless the frame spanned buffers. */
  readonly payload: Uint8Array
}

/** A device's state is complete; `bytes` is the sum of its chunk payloads. */
export interface DeviceEnd {
  readonly _tag: "DeviceEnd"
  readonly device: number
  readonly bytes: number
}

/** A session message: a kind, an optional device, and a small payload. */
export interface Control {
  readonly _tag: "Control"
  readonly kind: ControlKind
  /** Index of the device concerned, if any. */
  readonly device: number | undefined
  readonly payload: Uint8Array
}

/** The last frame: totals over the whole stream. */
export interface StreamEnd {
  readonly _tag: "StreamEnd"
  /** Sum of all chunk payload bytes. */
  readonly bytes: number
  /** Number of chunk frames. */
  readonly chunks: number
}

/** Any frame of the stream. */
export type Frame = Manifest | Chunk | DeviceEnd | Control | StreamEnd

function invert<K extends string>(codes: Readonly<Record<K, number>>): ReadonlyArray<K | undefined> {
  const byCode: Array<K | undefined> = []
  for (const [name, code] of Object.entries(codes) as Array<[K, number]>) byCode[code] = name
  return byCode
}

/** A field that breaks the format, and why. */
export interface Violation {
  readonly field: string
  readonly reason: string
}

const utf8 = new TextEncoder()
const utf8Strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** The device id a UTF-8 byte sequence encodes, or `undefined` if it is not valid UTF-8. */
export const decodeDeviceId = (bytes: Uint8Array): string | undefined => {
  try {
    return utf8Strict.decode(bytes)
  } catch {
    return undefined
  }
}

/** The UTF-8 encoding of a device id. */
export const encodeDeviceId = (id: string): Uint8Array => utf8.encode(id)

/**
 * The first rule a manifest's devices break, if any: 1 to `MaxDevices` devices; ids of 1 to
 * `MaxDeviceIdBytes` UTF-8 bytes, unique; a known kind; flags a uAPI mask 0-7; compatibility
 * data of at most `MaxCompatBytes`.
 */
export const manifestViolation = (devices: ReadonlyArray<ManifestDevice>): Violation | undefined => {
  if (devices.length < 1 || devices.length > MaxDevices) {
    return { field: "count", reason: `${devices.length} devices, expected 1 to ${MaxDevices}` }
  }
  const seen = new Set<string>()
  for (const [i, d] of devices.entries()) {
    const encoded = encodeDeviceId(d.id)
    const idBytes = encoded.length
    if (decodeDeviceId(encoded) !== d.id) {
      return { field: `devices[${i}].id`, reason: "not well-formed Unicode (a lone surrogate)" }
    }
    if (idBytes < 1 || idBytes > MaxDeviceIdBytes) {
      return { field: `devices[${i}].id`, reason: `${idBytes} UTF-8 bytes, expected 1 to ${MaxDeviceIdBytes}` }
    }
    if (seen.has(d.id)) return { field: `devices[${i}].id`, reason: `duplicate id ${JSON.stringify(d.id)}` }
    seen.add(d.id)
    if (!Object.hasOwn(DeviceKindCode, d.kind)) return { field: `devices[${i}].kind`, reason: `unknown kind ${d.kind}` }
    if (!Number.isInteger(d.flags) || d.flags < 0 || d.flags > 7) {
      return { field: `devices[${i}].flags`, reason: `${d.flags} is not a migration flag mask 0-7` }
    }
    if (d.compat.length > MaxCompatBytes) {
      return { field: `devices[${i}].compat`, reason: `${d.compat.length} bytes, at most ${MaxCompatBytes}` }
    }
  }
  return undefined
}
