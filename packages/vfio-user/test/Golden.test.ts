import { describe, expect, it } from "@effect/vitest"
import {
  decodeReply,
  decodeRequest,
  type ErrorReply,
  encodeReply,
  encodeRequest,
  type Frame,
  FrameDecoder,
  limitsFor,
  matchReply,
  type Reply,
  type Request
} from "@lockstep/vfio-user"
import { Result } from "effect"

/*
 * Golden bytes: every message below is written out by hand from the message layouts of the
 * vfio-user specification (QEMU docs/interop/vfio-user.rst), little-endian, one field per
 * group of hex digits, never produced by the codec under test. The header is
 *   u16 msg_id | u16 command | u32 message size (header included) | u32 flags | u32 error
 * with flags bits 0-3 the type (0 command, 1 reply), bit 4 no-reply, bit 5 error.
 */

/** Bytes from hex digits; spaces and line breaks only separate fields. */
const hex = (text: string): Uint8Array => {
  const digits = text.replace(/\s+/g, "")
  if (digits.length % 2 !== 0 || /[^0-9a-f]/i.test(digits)) throw new Error(`not hex bytes: ${text}`)
  return Uint8Array.from({ length: digits.length / 2 }, (_, i) => Number.parseInt(digits.slice(2 * i, 2 * i + 2), 16))
}

const ascii = (text: string): string =>
  Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("")

const limits = limitsFor(1 << 20)

const frameOf = (bytes: Uint8Array): Frame => {
  const pushed = new FrameDecoder(limits.maxFrameSize).push(bytes)
  expect(pushed.error).toBeUndefined()
  const [frame, ...rest] = pushed.frames
  expect(rest).toHaveLength(0)
  if (frame === undefined) throw new Error("no whole message in the bytes")
  return frame
}

const decodedReply = (bytes: Uint8Array): Reply | ErrorReply => {
  const decoded = decodeReply(frameOf(bytes), limits)
  if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
  return decoded.success
}

/** A command both ways: the encoder writes exactly the bytes, and the bytes decode to the value. */
const command = (name: string, msgId: number, request: Request, bytes: Uint8Array) =>
  it(`command: ${name}`, () => {
    expect(encodeRequest(msgId, request)).toEqual(bytes)
    expect(decodeRequest(frameOf(bytes), limits)).toEqual(Result.succeed(request))
  })

/** A reply both ways, and accepted as the answer to `request`. */
const reply = (name: string, msgId: number, request: Request, value: Reply | ErrorReply, bytes: Uint8Array) =>
  it(`reply: ${name}`, () => {
    expect(encodeReply(msgId, value)).toEqual(bytes)
    const frame = frameOf(bytes)
    expect(decodeReply(frame, limits)).toEqual(Result.succeed(value))
    expect(matchReply(request, msgId, frame.header, value)).toEqual(Result.succeed(value))
  })

const capabilities = '{"capabilities":{"max_msg_fds":0,"max_data_xfer_size":1048576}}'

describe("golden bytes from the spec's layouts", () => {
  // VERSION: u16 major, u16 minor, then the JSON capabilities with their terminating NUL.
  command(
    "VERSION 0.2 with capabilities",
    0,
    { _tag: "Version", major: 0, minor: 2, capabilities: { maxMsgFds: 0, maxDataXferSize: 1_048_576 } },
    hex(`0000 0100 54000000 00000000 00000000
         0000 0200 ${ascii(capabilities)} 00`)
  )

  // DEVICE_GET_INFO: argsz, flags, num_regions, num_irqs.
  const getInfo: Request = { _tag: "DeviceGetInfo", argsz: 16 }
  command(
    "DEVICE_GET_INFO",
    2,
    getInfo,
    hex("0200 0400 20000000 00000000 00000000  10000000 00000000 00000000 00000000")
  )
  reply(
    "DEVICE_GET_INFO: RESET|PCI, 9 regions, 5 irqs",
    2,
    getInfo,
    { _tag: "DeviceGetInfo", argsz: 16, flags: 3, numRegions: 9, numIrqs: 5 },
    hex("0200 0400 20000000 01000000 00000000  10000000 03000000 09000000 05000000")
  )

  // GET_REGION_INFO: argsz, flags, index, cap_offset, u64 size, u64 offset.
  const regionInfo: Request = { _tag: "GetRegionInfo", argsz: 32, index: 7 }
  command(
    "GET_REGION_INFO of region 7, asking for 32 bytes (no fd, no capabilities)",
    3,
    regionInfo,
    hex(`0300 0500 30000000 00000000 00000000
         20000000 00000000 07000000 00000000 0000000000000000 0000000000000000`)
  )
  reply(
    "GET_REGION_INFO cut to the 32 bytes asked while argsz says the full 80 (capabilities left out)",
    3,
    regionInfo,
    { _tag: "GetRegionInfo", argsz: 80, flags: 0b1011, index: 7, capOffset: 32, size: 256n, offset: 0n },
    hex(`0300 0500 30000000 01000000 00000000
         50000000 0b000000 07000000 20000000 0001000000000000 0000000000000000`)
  )

  // GET_IRQ_INFO: argsz, flags, index, count.
  const irqInfo: Request = { _tag: "GetIrqInfo", argsz: 16, index: 2 }
  command(
    "GET_IRQ_INFO of index 2 (MSI-X)",
    4,
    irqInfo,
    hex("0400 0700 20000000 00000000 00000000  10000000 00000000 02000000 00000000")
  )
  reply(
    "GET_IRQ_INFO: no interrupts of that type, count 0",
    4,
    irqInfo,
    { _tag: "GetIrqInfo", argsz: 16, flags: 0, index: 2, count: 0 },
    hex("0400 0700 20000000 01000000 00000000  10000000 00000000 02000000 00000000")
  )

  // REGION_READ: u64 offset, u32 region, u32 count (then the data, in the reply).
  const regionRead: Request = { _tag: "RegionRead", offset: 0n, region: 7, count: 4 }
  command(
    "REGION_READ of 4 bytes of config space",
    5,
    regionRead,
    hex("0500 0900 20000000 00000000 00000000  0000000000000000 07000000 04000000")
  )
  reply(
    "REGION_READ: vendor and device id",
    5,
    regionRead,
    { _tag: "RegionRead", offset: 0n, region: 7, data: new Uint8Array([0xde, 0x10, 0x30, 0x23]) },
    hex("0500 0900 24000000 01000000 00000000  0000000000000000 07000000 04000000 de103023")
  )

  // DEVICE_RESET: no payload either way; a refusal is the header alone with the error bit and errno.
  const reset: Request = { _tag: "DeviceReset" }
  command("DEVICE_RESET", 6, reset, hex("0600 0d00 10000000 00000000 00000000"))
  reply("DEVICE_RESET done", 6, reset, { _tag: "DeviceReset" }, hex("0600 0d00 10000000 01000000 00000000"))
  reply(
    "DEVICE_RESET refused with EINVAL",
    6,
    reset,
    { _tag: "ErrorReply", command: 13, errno: 22 },
    hex("0600 0d00 10000000 21000000 16000000")
  )

  // DEVICE_FEATURE: argsz, flags (feature in bits 0-15, GET 16, SET 17, PROBE 18), data.
  const migration: Request = { _tag: "GetMigrationFlags", argsz: 16 }
  command("DEVICE_FEATURE GET MIGRATION", 7, migration, hex("0700 1000 18000000 00000000 00000000  10000000 01000100"))
  reply(
    "DEVICE_FEATURE GET MIGRATION: STOP_COPY|PRE_COPY",
    7,
    migration,
    { _tag: "GetMigrationFlags", flags: 5n },
    hex("0700 1000 20000000 01000000 00000000  10000000 01000100 0500000000000000")
  )
  const setState: Request = { _tag: "SetDeviceState", argsz: 16, state: "STOP_COPY", dataFd: 0xffff_ffff }
  command(
    "DEVICE_FEATURE SET MIG_DEVICE_STATE to STOP_COPY (3), no data fd",
    8,
    setState,
    hex("0800 1000 20000000 00000000 00000000  10000000 02000200 03000000 ffffffff")
  )
  reply(
    "DEVICE_FEATURE SET MIG_DEVICE_STATE",
    8,
    setState,
    { _tag: "SetDeviceState", state: "STOP_COPY", dataFd: 0xffff_ffff },
    hex("0800 1000 20000000 01000000 00000000  10000000 02000200 03000000 ffffffff")
  )
  const dataSize: Request = { _tag: "GetStopCopySize", argsz: 16 }
  command(
    "DEVICE_FEATURE GET MIG_DATA_SIZE",
    9,
    dataSize,
    hex("0900 1000 18000000 00000000 00000000  10000000 09000100")
  )
  reply(
    "DEVICE_FEATURE GET MIG_DATA_SIZE refused with EINVAL (libvfio-user)",
    9,
    dataSize,
    { _tag: "ErrorReply", command: 16, errno: 22 },
    hex("0900 1000 10000000 21000000 16000000")
  )
  const probe: Request = {
    _tag: "ProbeFeature",
    argsz: 16,
    feature: 2,
    get: true,
    set: true,
    data: new Uint8Array(8)
  }
  command(
    "DEVICE_FEATURE PROBE GET|SET MIG_DEVICE_STATE with an (unused) 8-byte data area",
    10,
    probe,
    hex("0a00 1000 20000000 00000000 00000000  10000000 02000700 0000000000000000")
  )
  reply(
    "DEVICE_FEATURE PROBE: the request's payload echoed",
    10,
    probe,
    probe,
    hex("0a00 1000 20000000 01000000 00000000  10000000 02000700 0000000000000000")
  )

  // MIG_DATA_READ: request argsz (largest reply payload), size; reply argsz (8 + data), size, data.
  const read16: Request = { _tag: "MigDataRead", argsz: 24, size: 16 }
  command("MIG_DATA_READ of 16 bytes", 11, read16, hex("0b00 1100 18000000 00000000 00000000  18000000 10000000"))
  reply(
    "MIG_DATA_READ with 5 bytes, as the spec writes it",
    11,
    read16,
    { _tag: "MigDataRead", data: new Uint8Array([1, 2, 3, 4, 5]), padding: 0 },
    hex("0b00 1100 1d000000 01000000 00000000  0d000000 05000000 0102030405")
  )
  reply(
    "MIG_DATA_READ with 5 bytes padded to 8 + 16 (libvfio-user): argsz and size give the real count",
    11,
    read16,
    { _tag: "MigDataRead", data: new Uint8Array([1, 2, 3, 4, 5]), padding: 11 },
    hex("0b00 1100 28000000 01000000 00000000  0d000000 05000000 0102030405 0000000000000000000000")
  )
  reply(
    "MIG_DATA_READ's final, empty read, padded too",
    11,
    read16,
    { _tag: "MigDataRead", data: new Uint8Array(0), padding: 16 },
    hex("0b00 1100 28000000 01000000 00000000  08000000 00000000 00000000000000000000000000000000")
  )

  // MIG_DATA_WRITE: argsz, size, data; the reply has no payload.
  const write: Request = { _tag: "MigDataWrite", argsz: 12, data: new Uint8Array([9, 8, 7, 6]) }
  command(
    "MIG_DATA_WRITE of 4 bytes",
    12,
    write,
    hex("0c00 1200 1c000000 00000000 00000000  0c000000 04000000 09080706")
  )
  reply("MIG_DATA_WRITE taken", 12, write, { _tag: "MigDataWrite" }, hex("0c00 1200 10000000 01000000 00000000"))
})

describe("golden bytes a client refuses, bounds kept", () => {
  const read16: Request = { _tag: "MigDataRead", argsz: 24, size: 16 }

  const refusedBy = (bytes: Uint8Array, request: Request) => {
    const frame = frameOf(bytes)
    const decoded = decodeReply(frame, limits)
    if (Result.isFailure(decoded)) return decoded.failure
    const matched = matchReply(request, 11, frame.header, decoded.success)
    return Result.isFailure(matched) ? matched.failure : undefined
  }

  it("MIG_DATA_READ whose size is above the size asked", () => {
    // 17 bytes of data for a read of 16.
    const bytes = hex(`0b00 1100 29000000 01000000 00000000  19000000 11000000 ${"ab".repeat(17)}`)
    expect(refusedBy(bytes, read16)).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "ReplyMismatch", field: "size", value: 17 }
    })
  })

  it("MIG_DATA_READ whose argsz disagrees with its size", () => {
    // argsz 24 (the padded length) while size says 5.
    const bytes = hex("0b00 1100 28000000 01000000 00000000  18000000 05000000 0102030405 0000000000000000000000")
    expect(refusedBy(bytes, read16)).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "FieldInvalid", field: "argsz", value: 24 }
    })
  })

  it("MIG_DATA_READ whose body runs beyond the size asked", () => {
    // 5 bytes of data padded to 8 + 20 for a read of 16.
    const bytes = hex(`0b00 1100 2c000000 01000000 00000000  0d000000 05000000 0102030405 ${"00".repeat(15)}`)
    expect(refusedBy(bytes, read16)).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "ReplyMismatch", field: "payload", value: 28 }
    })
  })

  it("MIG_DATA_READ whose size is above the bytes that came", () => {
    const bytes = hex("0b00 1100 1d000000 01000000 00000000  10000000 08000000 0102030405")
    expect(refusedBy(bytes, read16)).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "FieldInvalid", field: "size", value: 8 }
    })
  })

  it("GET_REGION_INFO with argsz below the 32 bytes of the structure", () => {
    const bytes = hex(`0300 0500 30000000 01000000 00000000
                       1c000000 00000000 07000000 00000000 0000000000000000 0000000000000000`)
    expect(refusedBy(bytes, { _tag: "GetRegionInfo", argsz: 32, index: 7 })).toMatchObject({
      _tag: "ProtocolError",
      reason: {
        _tag: "FieldInvalid",
        field: "argsz",
        value: 28
      }
    })
  })

  it("the padded reply decodes the same from every slicing of the stream", () => {
    const bytes = hex("0b00 1100 28000000 01000000 00000000  0d000000 05000000 0102030405 0000000000000000000000")
    for (let cut = 0; cut <= bytes.length; cut++) {
      const decoder = new FrameDecoder(limits.maxFrameSize)
      const frames = [...decoder.push(bytes.subarray(0, cut)).frames, ...decoder.push(bytes.subarray(cut)).frames]
      expect(frames).toHaveLength(1)
    }
    expect(decodedReply(bytes)).toEqual({ _tag: "MigDataRead", data: new Uint8Array([1, 2, 3, 4, 5]), padding: 11 })
  })
})
