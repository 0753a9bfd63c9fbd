import { describe, expect, it } from "@effect/vitest"
import { States } from "@lockstep/fsm"
import {
  type Capabilities,
  Command,
  decodeReply,
  decodeRequest,
  type ErrorReply,
  encodeReply,
  encodeRequest,
  Feature,
  FeatureOp,
  type Frame,
  FrameDecoder,
  HeaderFlag,
  limitsFor,
  matchReply,
  type ProtocolError,
  type ProtocolErrorReason,
  type Reply,
  type Request
} from "@lockstep/vfio-user"
import { Result } from "effect"
import * as fc from "fast-check"

const limits = limitsFor(65_536)

const u16 = fc.integer({ min: 0, max: 0xffff })
const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const atLeast = (min: number) => fc.integer({ min, max: 0xffff_ffff })
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
const bytes = (max: number) => fc.uint8Array({ maxLength: max })
const state = fc.constantFrom(...States)

const capabilities: fc.Arbitrary<Capabilities> = fc.record(
  {
    maxMsgFds: u32,
    maxDataXferSize: atLeast(1),
    migration: fc.record({ pgsize: u32 }, { requiredKeys: [] }),
    twinSocket: fc.record({ supported: fc.boolean(), fdIndex: u32 }, { requiredKeys: [] })
  },
  { requiredKeys: [] }
)

const request: fc.Arbitrary<Request> = fc.oneof(
  fc.record({ _tag: fc.constant("Version"), major: fc.constant(0), minor: u16, capabilities }),
  fc.record({ _tag: fc.constant("DeviceGetInfo"), argsz: atLeast(16) }),
  fc.record({ _tag: fc.constant("GetRegionInfo"), argsz: atLeast(32), index: u32 }),
  fc.record({ _tag: fc.constant("GetIrqInfo"), argsz: atLeast(16), index: u32 }),
  fc.record({
    _tag: fc.constant("RegionRead"),
    offset: u64,
    region: u32,
    count: fc.integer({ min: 0, max: limits.maxDataXferSize })
  }),
  fc.record({ _tag: fc.constant("RegionWrite"), offset: u64, region: u32, data: bytes(512) }),
  fc.record({ _tag: fc.constant("DeviceReset") }),
  fc.record({ _tag: fc.constant("GetMigrationFlags"), argsz: atLeast(16) }),
  fc.record({ _tag: fc.constant("GetDeviceState"), argsz: atLeast(16) }),
  fc.record({ _tag: fc.constant("SetDeviceState"), argsz: atLeast(16), state, dataFd: u32 }),
  fc.record({ _tag: fc.constant("GetStopCopySize"), argsz: atLeast(16) }),
  fc.record({
    _tag: fc.constant("ProbeFeature"),
    argsz: atLeast(8),
    feature: u16,
    get: fc.boolean(),
    set: fc.boolean(),
    data: bytes(64)
  }),
  fc
    .integer({ min: 0, max: limits.maxDataXferSize })
    .chain((size) =>
      fc.record({ _tag: fc.constant("MigDataRead"), argsz: atLeast(8 + size), size: fc.constant(size) })
    ),
  fc.record({ _tag: fc.constant("MigDataWrite"), argsz: u32, data: bytes(512) })
)

const reply: fc.Arbitrary<Reply> = fc.oneof(
  fc.record({ _tag: fc.constant("Version"), major: fc.constant(0), minor: u16, capabilities }),
  fc.record({ _tag: fc.constant("DeviceGetInfo"), argsz: atLeast(16), flags: u32, numRegions: u32, numIrqs: u32 }),
  fc.record({
    _tag: fc.constant("GetRegionInfo"),
    argsz: atLeast(32),
    flags: u32,
    index: u32,
    capOffset: u32,
    size: u64,
    offset: u64
  }),
  fc.record({ _tag: fc.constant("GetIrqInfo"), argsz: atLeast(16), flags: u32, index: u32, count: u32 }),
  fc.record({ _tag: fc.constant("RegionRead"), offset: u64, region: u32, data: bytes(512) }),
  fc.record({ _tag: fc.constant("RegionWrite"), offset: u64, region: u32, count: u32 }),
  fc.record({ _tag: fc.constant("DeviceReset") }),
  fc.record({ _tag: fc.constant("GetMigrationFlags"), flags: u64 }),
  fc.record({ _tag: fc.constant("GetDeviceState"), state, dataFd: u32 }),
  fc.record({ _tag: fc.constant("SetDeviceState"), state, dataFd: u32 }),
  fc.record({ _tag: fc.constant("GetStopCopySize"), length: u64 }),
  fc.record({
    _tag: fc.constant("ProbeFeature"),
    argsz: atLeast(8),
    feature: u16,
    get: fc.boolean(),
    set: fc.boolean(),
    data: bytes(64)
  }),
  fc.record({ _tag: fc.constant("MigDataRead"), data: bytes(512), padding: fc.nat(512) }),
  fc.record({ _tag: fc.constant("MigDataWrite") })
)

const errorReply: fc.Arbitrary<ErrorReply> = fc.record({
  _tag: fc.constant("ErrorReply"),
  command: fc.constantFrom(...Object.values(Command)),
  errno: u32
})

/** Cuts `bytes` at the given points (sorted, deduplicated) into slices. */
const slice = (bytes: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let from = 0
  for (const p of points) {
    out.push(bytes.subarray(from, p))
    from = p
  }
  out.push(bytes.subarray(from))
  return out
}

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** Feeds whole-stream bytes to a decoder in slices; expects no framing error. */
const frames = (stream: Uint8Array, cuts: ReadonlyArray<number> = []): Array<Frame> => {
  const decoder = new FrameDecoder(limits.maxFrameSize)
  const out: Array<Frame> = []
  for (const part of slice(stream, cuts)) {
    const pushed = decoder.push(part)
    expect(pushed.error).toBeUndefined()
    out.push(...pushed.frames)
  }
  expect(decoder.finish()).toBeUndefined()
  expect(decoder.buffered).toBe(0)
  return out
}

const one = (bytes: Uint8Array): Frame => {
  const [frame, ...rest] = frames(bytes)
  expect(rest).toHaveLength(0)
  if (frame === undefined) throw new Error("no frame decoded")
  return frame
}

/** A raw message with a hand-written header and payload. */
const raw = (o: {
  readonly msgId?: number
  readonly command: number
  readonly flags?: number
  readonly error?: number
  readonly size?: number
  readonly payload?: Uint8Array
}): Uint8Array => {
  const payload = o.payload ?? new Uint8Array(0)
  const out = new Uint8Array(16 + payload.length)
  const view = new DataView(out.buffer)
  view.setUint16(0, o.msgId ?? 7, true)
  view.setUint16(2, o.command, true)
  view.setUint32(4, o.size ?? out.length, true)
  view.setUint32(8, o.flags ?? 0, true)
  view.setUint32(12, o.error ?? 0, true)
  out.set(payload, 16)
  return out
}

/** Little-endian u32 fields, then optional extra bytes. */
const words = (values: ReadonlyArray<number>, extra: Uint8Array = new Uint8Array(0)): Uint8Array => {
  const out = new Uint8Array(values.length * 4 + extra.length)
  const view = new DataView(out.buffer)
  values.forEach((v, i) => {
    view.setUint32(i * 4, v, true)
  })
  out.set(extra, values.length * 4)
  return out
}

const asCommand = (bytes: Uint8Array) => decodeRequest(one(bytes), limits)
const asReply = (bytes: Uint8Array) => decodeReply(one(bytes), limits)

/** The reason of the protocol error a decode failed with. */
const failure = (result: Result.Result<unknown, ProtocolError>): ProtocolErrorReason => {
  if (Result.isSuccess(result))
    throw new Error(`expected a protocol error, decoded ${JSON.stringify(result.success, bigints)}`)
  expect(result.failure._tag).toBe("ProtocolError")
  return result.failure.reason
}

const bigints = (_: string, v: unknown) => (typeof v === "bigint" ? v.toString() : v)

const versionPayload = (json: string | Uint8Array, major = 0, minor = 2): Uint8Array => {
  const data = typeof json === "string" ? new TextEncoder().encode(json) : json
  const out = new Uint8Array(4 + data.length)
  const view = new DataView(out.buffer)
  view.setUint16(0, major, true)
  view.setUint16(2, minor, true)
  out.set(data, 4)
  return out
}

describe("Codec round trips", () => {
  it("decodes every encoded command to itself, whatever the slicing of the stream", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(u16, request), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat()),
        (msgs, cuts) => {
          const stream = concat(msgs.map(([id, r]) => encodeRequest(id, r)))
          const decoded = frames(stream, cuts)
          expect(decoded).toHaveLength(msgs.length)
          decoded.forEach((frame, i) => {
            const [id, r] = msgs[i] ?? [0, undefined]
            expect(frame.header.msgId).toBe(id)
            expect(frame.header.flags).toBe(HeaderFlag.TYPE_COMMAND)
            expect(decodeRequest(frame, limits)).toEqual(Result.succeed(r))
          })
        }
      )
    )
  })

  it("decodes every encoded reply (and error reply) to itself", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(u16, fc.oneof(reply, errorReply)), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat()),
        (msgs, cuts) => {
          const stream = concat(msgs.map(([id, r]) => encodeReply(id, r)))
          const decoded = frames(stream, cuts)
          expect(decoded).toHaveLength(msgs.length)
          decoded.forEach((frame, i) => {
            const [id, r] = msgs[i] ?? [0, undefined]
            expect(frame.header.msgId).toBe(id)
            expect(decodeReply(frame, limits)).toEqual(Result.succeed(r))
          })
        }
      )
    )
  })

  it("marks the no-reply flag on request", () => {
    const frame = one(encodeRequest(3, { _tag: "DeviceReset" }, { noReply: true }))
    expect(frame.header.flags).toBe(HeaderFlag.NO_REPLY)
  })

  it("matches every well-formed reply to the request it answers", () => {
    const pairs: ReadonlyArray<readonly [Request, Reply]> = [
      [
        { _tag: "RegionRead", offset: 4n, region: 7, count: 2 },
        { _tag: "RegionRead", offset: 4n, region: 7, data: new Uint8Array(2) }
      ],
      [
        { _tag: "SetDeviceState", argsz: 16, state: "STOP", dataFd: 0xffff_ffff },
        { _tag: "SetDeviceState", state: "STOP", dataFd: 0 }
      ],
      [
        { _tag: "MigDataRead", argsz: 108, size: 100 },
        { _tag: "MigDataRead", data: new Uint8Array(10), padding: 0 }
      ],
      // libvfio-user's padding, up to the size asked.
      [
        { _tag: "MigDataRead", argsz: 108, size: 100 },
        { _tag: "MigDataRead", data: new Uint8Array(10), padding: 90 }
      ],
      [
        { _tag: "ProbeFeature", argsz: 24, feature: 2, get: true, set: false, data: new Uint8Array(16) },
        { _tag: "ProbeFeature", argsz: 24, feature: 2, get: true, set: false, data: new Uint8Array(16) }
      ]
    ]
    for (const [req, rep] of pairs) {
      const frame = one(encodeReply(9, rep))
      const decoded = decodeReply(frame, limits)
      if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
      expect(matchReply(req, 9, frame.header, decoded.success)).toEqual(Result.succeed(rep))
    }
  })
})

describe("Codec framing bounds", () => {
  it("rejects a size below the header", () => {
    const decoder = new FrameDecoder(limits.maxFrameSize)
    const pushed = decoder.push(raw({ command: Command.VERSION, size: 15 }))
    expect(pushed.error).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "FrameSizeInvalid", field: "size", value: 15, command: "VERSION" }
    })
  })

  it("rejects an oversized frame from its header alone, without buffering its body", () => {
    const decoder = new FrameDecoder(limits.maxFrameSize)
    const header = raw({ command: Command.MIG_DATA_WRITE, size: limits.maxFrameSize + 1 }).subarray(0, 16)
    const pushed = decoder.push(header)
    expect(pushed.error).toMatchObject({
      _tag: "ProtocolError",
      reason: {
        _tag: "FrameSizeInvalid",
        value: limits.maxFrameSize + 1,
        max: limits.maxFrameSize
      }
    })
    expect(decoder.buffered).toBe(0)
    // Framing is lost for good: later bytes are not interpreted.
    expect(decoder.push(encodeRequest(1, { _tag: "DeviceReset" })).frames).toHaveLength(0)
  })

  it("hands over the messages before a broken frame", () => {
    const decoder = new FrameDecoder(limits.maxFrameSize)
    const pushed = decoder.push(concat([encodeRequest(1, { _tag: "DeviceReset" }), raw({ command: 4, size: 3 })]))
    expect(pushed.frames).toHaveLength(1)
    expect(pushed.error?.reason._tag).toBe("FrameSizeInvalid")
  })

  it("reports a stream that ends inside a message", () => {
    const decoder = new FrameDecoder(limits.maxFrameSize)
    const whole = encodeRequest(1, { _tag: "MigDataWrite", argsz: 18, data: new Uint8Array(10) })
    expect(decoder.push(whole.subarray(0, 20)).frames).toHaveLength(0)
    expect(decoder.finish()).toMatchObject({
      _tag: "ProtocolError",
      reason: {
        _tag: "TruncatedFrame",
        command: "MIG_DATA_WRITE",
        value: 34,
        received: 20
      }
    })
    const cut = new FrameDecoder(limits.maxFrameSize)
    cut.push(whole.subarray(0, 5))
    expect(cut.finish()).toMatchObject({
      _tag: "ProtocolError",
      reason: { _tag: "TruncatedFrame", value: 16, received: 5 }
    })
  })

  it("never throws and never holds more than one frame on arbitrary bytes", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 256 }), { maxLength: 20 }), (chunks) => {
        const decoder = new FrameDecoder(1024)
        for (const chunk of chunks) {
          const pushed = decoder.push(chunk)
          for (const frame of pushed.frames) {
            decodeRequest(frame, limits)
            decodeReply(frame, limits)
          }
          expect(decoder.buffered).toBeLessThan(1024)
        }
        decoder.finish()
      })
    )
  })

  it("decodes arbitrary frames to a value or a typed error, never a throw", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...Object.values(Command), 0, 14, 19, 0xffff),
        fc.constantFrom(0, 1, 2, 0x10, 0x20, 0x21, 0x31),
        fc.uint8Array({ maxLength: 64 }),
        (command, flags, payload) => {
          const frame = one(raw({ command, flags, payload }))
          const outcomes: ReadonlyArray<Result.Result<unknown, ProtocolError>> = [
            decodeRequest(frame, limits),
            decodeReply(frame, limits)
          ]
          for (const decoded of outcomes) {
            if (Result.isFailure(decoded)) expect(decoded.failure.reason._tag).toMatch(/Invalid|Unknown|Unsupported/)
          }
        }
      )
    )
  })
})

describe("Codec rejects malformed commands", () => {
  const cases: ReadonlyArray<readonly [string, Uint8Array, Record<string, unknown>]> = [
    [
      "a reply sent as a command",
      raw({ command: 4, flags: 1, payload: words([16, 0, 0, 0]) }),
      { _tag: "FieldInvalid", field: "flags.type", value: 1 }
    ],
    [
      "a type that is neither command nor reply",
      raw({ command: 4, flags: 5, payload: words([16, 0, 0, 0]) }),
      { _tag: "FieldInvalid", field: "flags.type", value: 5 }
    ],
    ["the error bit on a command", raw({ command: 13, flags: 0x20 }), { _tag: "FieldInvalid", field: "flags.error" }],
    ["an unknown command", raw({ command: 14 }), { _tag: "UnknownCommand", field: "command", value: 14 }],
    ["an unknown command number", raw({ command: 999 }), { _tag: "UnknownCommand", value: 999 }],
    [
      "DMA_MAP (not carried)",
      raw({ command: 2, payload: new Uint8Array(32) }),
      { _tag: "UnsupportedCommand", command: "DMA_MAP", field: "command", value: 2 }
    ],
    [
      "a server-to-client command",
      raw({ command: 11, payload: new Uint8Array(16) }),
      { _tag: "UnsupportedCommand", command: "DMA_READ" }
    ],
    [
      "VERSION shorter than its fixed part",
      raw({ command: 1, payload: new Uint8Array(3) }),
      { _tag: "FieldInvalid", command: "VERSION", field: "payload", value: 3 }
    ],
    [
      "VERSION major 1",
      raw({ command: 1, payload: versionPayload("{}\0", 1) }),
      { _tag: "FieldInvalid", field: "major", value: 1 }
    ],
    [
      "VERSION JSON without NUL",
      raw({ command: 1, payload: versionPayload("{}") }),
      { _tag: "FieldInvalid", field: "version data" }
    ],
    [
      "VERSION JSON with an inner NUL",
      raw({ command: 1, payload: versionPayload("{}\0{}\0") }),
      { _tag: "FieldInvalid", field: "version data", value: 2 }
    ],
    [
      "VERSION data that is not JSON",
      raw({ command: 1, payload: versionPayload("{capabilities\0") }),
      { _tag: "FieldInvalid", field: "version data" }
    ],
    [
      "VERSION JSON of the wrong shape",
      raw({ command: 1, payload: versionPayload('{"capabilities":{"max_data_xfer_size":"big"}}\0') }),
      { _tag: "FieldInvalid", field: "version data" }
    ],
    [
      "VERSION max_data_xfer_size 0",
      raw({ command: 1, payload: versionPayload('{"capabilities":{"max_data_xfer_size":0}}\0') }),
      { _tag: "FieldInvalid", field: "version data" }
    ],
    [
      "VERSION data that is not UTF-8",
      raw({ command: 1, payload: versionPayload(new Uint8Array([0xff, 0xfe, 0])) }),
      { _tag: "FieldInvalid", value: "invalid UTF-8" }
    ],
    [
      "VERSION data too long",
      raw({ command: 1, payload: versionPayload(`"${"x".repeat(5000)}"\0`) }),
      { _tag: "FieldInvalid", field: "version data" }
    ],
    [
      "DEVICE_GET_INFO of 12 bytes",
      raw({ command: 4, payload: words([16, 0, 0]) }),
      { _tag: "FieldInvalid", command: "DEVICE_GET_INFO", field: "payload", value: 12 }
    ],
    [
      "DEVICE_GET_INFO with argsz 8",
      raw({ command: 4, payload: words([8, 0, 0, 0]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 8 }
    ],
    [
      "GET_REGION_INFO of 16 bytes",
      raw({ command: 5, payload: words([32, 0, 7, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 16 }
    ],
    [
      "GET_REGION_INFO with argsz 16",
      raw({ command: 5, payload: words([16, 0, 7, 0, 0, 0, 0, 0]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 16 }
    ],
    [
      "REGION_READ with trailing data",
      raw({ command: 9, payload: words([0, 0, 7, 4, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 20 }
    ],
    [
      "REGION_READ of more than max_data_xfer_size",
      raw({ command: 9, payload: words([0, 0, 7, 65_537]) }),
      { _tag: "FieldInvalid", field: "count", value: 65_537 }
    ],
    [
      "REGION_WRITE whose count exceeds its data",
      raw({ command: 10, payload: words([0, 0, 7, 8, 1]) }),
      { _tag: "FieldInvalid", field: "count", value: 8 }
    ],
    [
      "DEVICE_RESET with a payload",
      raw({ command: 13, payload: new Uint8Array(4) }),
      { _tag: "FieldInvalid", command: "DEVICE_RESET", field: "payload", value: 4 }
    ],
    [
      "DEVICE_FEATURE shorter than argsz and flags",
      raw({ command: 16, payload: new Uint8Array(6) }),
      { _tag: "FieldInvalid", field: "payload", value: 6 }
    ],
    [
      "DEVICE_FEATURE with GET and SET",
      raw({ command: 16, payload: words([16, FeatureOp.GET | FeatureOp.SET | Feature.MIG_DEVICE_STATE]) }),
      { _tag: "FieldInvalid", field: "flags" }
    ],
    [
      "DEVICE_FEATURE with neither GET nor SET",
      raw({ command: 16, payload: words([16, Feature.MIGRATION]) }),
      { _tag: "FieldInvalid", field: "flags", value: 1 }
    ],
    [
      "DEVICE_FEATURE with an unknown operation bit",
      raw({ command: 16, payload: words([16, (1 << 20) | FeatureOp.GET | Feature.MIGRATION]) }),
      { _tag: "FieldInvalid", field: "flags" }
    ],
    [
      "DEVICE_FEATURE SET MIGRATION",
      raw({ command: 16, payload: words([16, FeatureOp.SET | Feature.MIGRATION, 0, 0]) }),
      { _tag: "UnsupportedCommand", command: "DEVICE_FEATURE", field: "flags" }
    ],
    [
      "DEVICE_FEATURE DMA_LOGGING_START",
      raw({ command: 16, payload: words([32, FeatureOp.SET | Feature.DMA_LOGGING_START, 0, 0, 0, 0]) }),
      { _tag: "UnsupportedCommand", field: "flags" }
    ],
    [
      "SET MIG_DEVICE_STATE without data",
      raw({ command: 16, payload: words([16, FeatureOp.SET | Feature.MIG_DEVICE_STATE]) }),
      { _tag: "FieldInvalid", field: "payload", value: 8 }
    ],
    [
      "SET MIG_DEVICE_STATE to state 8",
      raw({ command: 16, payload: words([16, FeatureOp.SET | Feature.MIG_DEVICE_STATE, 8, 0xffff_ffff]) }),
      { _tag: "FieldInvalid", field: "device_state", value: 8 }
    ],
    [
      "GET MIG_DEVICE_STATE with a 4-byte data area",
      raw({ command: 16, payload: words([16, FeatureOp.GET | Feature.MIG_DEVICE_STATE, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 12 }
    ],
    [
      "GET MIGRATION with argsz too small for the answer",
      raw({ command: 16, payload: words([8, FeatureOp.GET | Feature.MIGRATION]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 8 }
    ],
    [
      "PROBE with argsz below its fixed part",
      raw({ command: 16, payload: words([7, FeatureOp.PROBE | Feature.MIGRATION]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 7 }
    ],
    [
      "MIG_DATA_READ of more than max_data_xfer_size",
      raw({ command: 17, payload: words([8 + 70_000, 70_000]) }),
      { _tag: "FieldInvalid", field: "size", value: 70_000 }
    ],
    [
      "MIG_DATA_READ with argsz below 8 + size",
      raw({ command: 17, payload: words([8, 100]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 8 }
    ],
    [
      "MIG_DATA_READ with extra bytes",
      raw({ command: 17, payload: words([8, 0, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 12 }
    ],
    [
      "MIG_DATA_WRITE whose size exceeds its data",
      raw({ command: 18, payload: words([108, 100], new Uint8Array(50)) }),
      { _tag: "FieldInvalid", field: "size", value: 100 }
    ],
    [
      "MIG_DATA_WRITE whose data exceeds its size",
      raw({ command: 18, payload: words([12, 4], new Uint8Array(8)) }),
      { _tag: "FieldInvalid", field: "size", value: 4 }
    ]
  ]
  for (const [name, bytes, expected] of cases) {
    it(name, () => {
      expect(failure(asCommand(bytes))).toMatchObject({ ...expected })
    })
  }

  it("accepts a GET with the kernel's 8-byte data area", () => {
    expect(
      asCommand(raw({ command: 16, payload: words([16, FeatureOp.GET | Feature.MIG_DEVICE_STATE, 0, 0]) }))
    ).toEqual(Result.succeed({ _tag: "GetDeviceState", argsz: 16 }))
  })

  it("ignores capabilities it does not model", () => {
    const json =
      '{"capabilities":{"max_msg_fds":8,"pgsizes":4096,"write_multiple":true,"max_data_xfer_size":1048576}}\0'
    expect(asCommand(raw({ command: 1, payload: versionPayload(json) }))).toEqual(
      Result.succeed({
        _tag: "Version",
        major: 0,
        minor: 2,
        capabilities: { maxMsgFds: 8, maxDataXferSize: 1_048_576 }
      })
    )
  })

  it("accepts VERSION without JSON", () => {
    expect(asCommand(raw({ command: 1, payload: versionPayload("") }))).toEqual(
      Result.succeed({ _tag: "Version", major: 0, minor: 2, capabilities: {} })
    )
  })
})

describe("Codec rejects malformed replies", () => {
  const reply = 1
  const cases: ReadonlyArray<readonly [string, Uint8Array, Record<string, unknown>]> = [
    ["a command where a reply is due", raw({ command: 13 }), { _tag: "FieldInvalid", field: "flags.type", value: 0 }],
    [
      "an error reply with a payload",
      raw({ command: 13, flags: reply | 0x20, error: 22, payload: new Uint8Array(4) }),
      { _tag: "FieldInvalid", field: "payload", value: 4 }
    ],
    [
      "an unknown command",
      raw({ command: 77, flags: reply }),
      { _tag: "UnknownCommand", value: 77, direction: "reply" }
    ],
    [
      "DEVICE_GET_INFO of 20 bytes",
      raw({ command: 4, flags: reply, payload: words([16, 0, 9, 0, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 20 }
    ],
    [
      "GET_REGION_INFO with argsz below 32",
      raw({ command: 5, flags: reply, payload: words([31, 0, 7, 0, 0, 0, 0, 0]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 31 }
    ],
    [
      "REGION_READ whose count exceeds its data",
      raw({ command: 9, flags: reply, payload: words([0, 0, 7, 1000], new Uint8Array(4)) }),
      { _tag: "FieldInvalid", field: "count", value: 1000 }
    ],
    [
      "REGION_WRITE with data",
      raw({ command: 10, flags: reply, payload: words([0, 0, 7, 4, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 20 }
    ],
    [
      "DEVICE_FEATURE GET MIGRATION without its data",
      raw({ command: 16, flags: reply, payload: words([16, FeatureOp.GET | Feature.MIGRATION]) }),
      { _tag: "FieldInvalid", field: "payload", value: 8 }
    ],
    [
      "DEVICE_FEATURE with argsz that is not its size",
      raw({ command: 16, flags: reply, payload: words([64, FeatureOp.GET | Feature.MIG_DEVICE_STATE, 2, 0]) }),
      { _tag: "FieldInvalid", field: "argsz", value: 64 }
    ],
    [
      "GET MIG_DEVICE_STATE answering state 9",
      raw({ command: 16, flags: reply, payload: words([16, FeatureOp.GET | Feature.MIG_DEVICE_STATE, 9, 0]) }),
      { _tag: "FieldInvalid", field: "device_state", value: 9 }
    ],
    [
      "MIG_DATA_READ whose size exceeds its data",
      raw({ command: 17, flags: reply, payload: words([108, 100], new Uint8Array(3)) }),
      { _tag: "FieldInvalid", field: "size", value: 100 }
    ],
    [
      "MIG_DATA_READ whose argsz is not 8 + size",
      raw({ command: 17, flags: reply, payload: words([8, 3], new Uint8Array(3)) }),
      { _tag: "FieldInvalid", field: "argsz", value: 8 }
    ],
    [
      "MIG_DATA_WRITE with a payload",
      raw({ command: 18, flags: reply, payload: words([8, 0]) }),
      { _tag: "FieldInvalid", field: "payload", value: 8 }
    ],
    [
      "VERSION answering major 1",
      raw({ command: 1, flags: reply, payload: versionPayload("{}\0", 1) }),
      { _tag: "FieldInvalid", field: "major", value: 1 }
    ]
  ]
  for (const [name, bytes, expected] of cases) {
    it(name, () => {
      expect(failure(asReply(bytes))).toMatchObject({ ...expected, direction: "reply" })
    })
  }

  const mismatches: ReadonlyArray<readonly [string, Request, number, Uint8Array, Record<string, unknown>]> = [
    [
      "another msg_id",
      { _tag: "DeviceReset" },
      5,
      encodeReply(6, { _tag: "DeviceReset" }),
      { field: "msg_id", value: 6, expected: 5 }
    ],
    [
      "another command",
      { _tag: "DeviceReset" },
      5,
      encodeReply(5, { _tag: "MigDataWrite" }),
      { field: "command", value: "MIG_DATA_WRITE", expected: "DEVICE_RESET" }
    ],
    [
      "another feature",
      { _tag: "GetMigrationFlags", argsz: 16 },
      5,
      encodeReply(5, { _tag: "GetDeviceState", state: "RUNNING", dataFd: 0 }),
      { field: "operation", value: "GetDeviceState" }
    ],
    [
      "a higher minor version",
      { _tag: "Version", major: 0, minor: 2, capabilities: {} },
      5,
      encodeReply(5, { _tag: "Version", major: 0, minor: 3, capabilities: {} }),
      { field: "minor", value: 3 }
    ],
    [
      "another region index",
      { _tag: "GetRegionInfo", argsz: 32, index: 7 },
      5,
      encodeReply(5, { _tag: "GetRegionInfo", argsz: 32, flags: 0, index: 2, capOffset: 0, size: 0n, offset: 0n }),
      { field: "index", value: 2, expected: 7 }
    ],
    [
      "a short region read",
      { _tag: "RegionRead", offset: 0n, region: 7, count: 8 },
      5,
      encodeReply(5, { _tag: "RegionRead", offset: 0n, region: 7, data: new Uint8Array(4) }),
      { field: "count", value: 4, expected: 8 }
    ],
    [
      "another region offset",
      { _tag: "RegionWrite", offset: 8n, region: 7, data: new Uint8Array(4) },
      5,
      encodeReply(5, { _tag: "RegionWrite", offset: 0n, region: 7, count: 4 }),
      { field: "offset", value: 0n, expected: 8n }
    ],
    [
      "another state",
      { _tag: "SetDeviceState", argsz: 16, state: "STOP", dataFd: 0xffff_ffff },
      5,
      encodeReply(5, { _tag: "SetDeviceState", state: "RUNNING", dataFd: 0 }),
      { field: "device_state", value: 2, expected: 1 }
    ],
    [
      "more migration data than asked",
      { _tag: "MigDataRead", argsz: 12, size: 4 },
      5,
      encodeReply(5, { _tag: "MigDataRead", data: new Uint8Array(5), padding: 0 }),
      { field: "size", value: 5 }
    ],
    [
      "padding beyond the size asked",
      { _tag: "MigDataRead", argsz: 12, size: 4 },
      5,
      encodeReply(5, { _tag: "MigDataRead", data: new Uint8Array(2), padding: 3 }),
      { field: "payload", value: 13 }
    ],
    [
      "another interrupt index",
      { _tag: "GetIrqInfo", argsz: 16, index: 2 },
      5,
      encodeReply(5, { _tag: "GetIrqInfo", argsz: 16, flags: 0, index: 3, count: 0 }),
      { field: "index", value: 3, expected: 2 }
    ],
    [
      "a probe that does not echo argsz",
      { _tag: "ProbeFeature", argsz: 24, feature: 2, get: true, set: false, data: new Uint8Array(16) },
      5,
      encodeReply(5, { _tag: "ProbeFeature", argsz: 8, feature: 2, get: true, set: false, data: new Uint8Array(16) }),
      { field: "argsz", value: 8, expected: 24 }
    ]
  ]
  for (const [name, req, msgId, bytes, expected] of mismatches) {
    it(`a reply with ${name}`, () => {
      const frame = one(bytes)
      const decoded = decodeReply(frame, limits)
      if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
      const matched = matchReply(req, msgId, frame.header, decoded.success)
      expect(Result.isFailure(matched) ? matched.failure : undefined).toMatchObject({
        _tag: "ProtocolError",
        reason: {
          _tag: "ReplyMismatch",
          ...expected
        }
      })
    })
  }

  it("passes an error reply through to its request", () => {
    const frame = one(encodeReply(5, { _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 22 }))
    const decoded = decodeReply(frame, limits)
    if (Result.isFailure(decoded)) throw new Error(decoded.failure.message)
    expect(matchReply({ _tag: "GetStopCopySize", argsz: 16 }, 5, frame.header, decoded.success)).toEqual(
      Result.succeed({ _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 22 })
    )
  })
})
