import { type State, StateNumber, stateOfNumber } from "@lockstep/fsm"
import { Result, Schema } from "effect"
import {
  type Capabilities,
  type CommandName,
  commandLabel,
  commandOf,
  commandOfNumber,
  type ErrorReply,
  Feature,
  FeatureOp,
  type Frame,
  type Header,
  HeaderFlag,
  HeaderSize,
  IrqInfoSize,
  isReplyTo,
  RegionInfoSize,
  type Reply,
  type ReplyOf,
  type Request
} from "./Message.js"
import { type Direction, ProtocolError } from "./ProtocolError.js"

/** Bounds a decoder enforces on untrusted input. */
export interface Limits {
  /** Largest data count a command may carry or ask for (`max_data_xfer_size` of the receiver). */
  readonly maxDataXferSize: number
  /** Largest message accepted, header included. */
  readonly maxFrameSize: number
}

/** Room above `max_data_xfer_size` for the headers and fixed fields of a data message. */
export const FrameHeadroom = 4096

/** The limits of a receiver that accepts data transfers of up to `maxDataXferSize` bytes. */
export const limitsFor = (maxDataXferSize: number): Limits => ({
  maxDataXferSize,
  maxFrameSize: maxDataXferSize + FrameHeadroom
})

/** Longest VERSION JSON accepted; capabilities are a handful of numbers. */
const MaxVersionJson = 4096

// ---------------------------------------------------------------------------------------------
// Framing

/** Reads the 16-byte header at the start of `bytes` (which must hold at least 16 bytes). */
const readHeader = (bytes: Uint8Array): Header => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, HeaderSize)
  return {
    msgId: view.getUint16(0, true),
    command: view.getUint16(2, true),
    size: view.getUint32(4, true),
    flags: view.getUint32(8, true),
    error: view.getUint32(12, true)
  }
}

/** What one `FrameDecoder.push` produced: the whole messages, and the error that stopped it, if any. */
export interface Frames {
  readonly frames: ReadonlyArray<Frame>
  readonly error: ProtocolError | undefined
}

/**
 * Cuts whole messages out of a byte stream that arrives in arbitrary slices. Memory is
 * bounded: it never holds more than one partial message, and a header declaring a size
 * outside `16..maxFrameSize` stops it for good (framing is lost, the connection must close).
 */
export class FrameDecoder {
  private chunks: Array<Uint8Array> = []
  private length = 0
  private failure: ProtocolError | undefined = undefined

  constructor(readonly maxFrameSize: number) {}

  /** Bytes held that do not form a whole message yet. */
  get buffered(): number {
    return this.length
  }

  /** Feeds the next slice of the stream; returns the messages it completed. */
  push(chunk: Uint8Array): Frames {
    if (this.failure !== undefined) return { frames: [], error: this.failure }
    if (chunk.length > 0) {
      this.chunks.push(chunk)
      this.length += chunk.length
    }
    const frames: Array<Frame> = []
    while (this.length >= HeaderSize) {
      const header = readHeader(this.peekHeader())
      if (header.size < HeaderSize || header.size > this.maxFrameSize) {
        this.failure = ProtocolError.frameSizeInvalid({
          command: commandLabel(header.command),
          msgId: header.msgId,
          field: "size",
          value: header.size,
          min: HeaderSize,
          max: this.maxFrameSize
        })
        this.chunks = []
        this.length = 0
        return { frames, error: this.failure }
      }
      if (this.length < header.size) break
      const bytes = this.take(header.size)
      frames.push({ header, payload: bytes.subarray(HeaderSize) })
    }
    return { frames, error: undefined }
  }

  /** The stream has ended: a partial message left over is a truncation. */
  finish(): ProtocolError | undefined {
    if (this.failure !== undefined || this.length === 0) return undefined
    const declared = this.length >= HeaderSize ? readHeader(this.peekHeader()) : undefined
    return ProtocolError.truncatedFrame({
      command: declared === undefined ? "unknown command" : commandLabel(declared.command),
      field: "size",
      value: declared?.size ?? HeaderSize,
      received: this.length
    })
  }

  private peekHeader(): Uint8Array {
    const first = this.chunks[0]
    if (first !== undefined && first.length >= HeaderSize) return first
    return this.copy(HeaderSize, false)
  }

  private take(n: number): Uint8Array {
    return this.copy(n, true)
  }

  /** Copies the first `n` buffered bytes (always a copy: a message never aliases socket buffers). */
  private copy(n: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(n)
    let filled = 0
    let index = 0
    while (filled < n) {
      const chunk = this.chunks[index]
      if (chunk === undefined) break
      const part = Math.min(chunk.length, n - filled)
      out.set(chunk.subarray(0, part), filled)
      filled += part
      if (consume && part < chunk.length) this.chunks[index] = chunk.subarray(part)
      else index++
    }
    if (consume) {
      this.chunks.splice(0, index)
      this.length -= n
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

class Writer {
  readonly bytes: Uint8Array
  private readonly view: DataView
  private at = 0

  constructor(size: number) {
    this.bytes = new Uint8Array(size)
    this.view = new DataView(this.bytes.buffer)
  }

  u16(v: number): this {
    this.view.setUint16(this.at, v, true)
    this.at += 2
    return this
  }

  u32(v: number): this {
    this.view.setUint32(this.at, v, true)
    this.at += 4
    return this
  }

  u64(v: bigint): this {
    this.view.setBigUint64(this.at, v, true)
    this.at += 8
    return this
  }

  data(b: Uint8Array): this {
    this.bytes.set(b, this.at)
    this.at += b.length
    return this
  }

  /** Leaves `n` zero bytes. */
  zeros(n: number): this {
    this.at += n
    return this
  }
}

/** A payload: its size and how to write it. */
interface Body {
  readonly size: number
  readonly write: (w: Writer) => void
}

const message = (msgId: number, command: number, flags: number, error: number, body: Body): Uint8Array => {
  const size = HeaderSize + body.size
  const w = new Writer(size)
  w.u16(msgId).u16(command).u32(size).u32(flags).u32(error)
  body.write(w)
  return w.bytes
}

const empty: Body = { size: 0, write: () => {} }

const textEncoder = new TextEncoder()

/** The VERSION JSON object of some capabilities, in wire names, with absent fields left out. */
const capabilitiesJson = (c: Capabilities): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  if (c.maxMsgFds !== undefined) out.max_msg_fds = c.maxMsgFds
  if (c.maxDataXferSize !== undefined) out.max_data_xfer_size = c.maxDataXferSize
  if (c.migration !== undefined) {
    out.migration = c.migration.pgsize === undefined ? {} : { pgsize: c.migration.pgsize }
  }
  if (c.twinSocket !== undefined) {
    const twin: Record<string, unknown> = {}
    if (c.twinSocket.supported !== undefined) twin.supported = c.twinSocket.supported
    if (c.twinSocket.fdIndex !== undefined) twin.fd_index = c.twinSocket.fdIndex
    out.twin_socket = twin
  }
  return out
}

const versionBody = (major: number, minor: number, capabilities: Capabilities): Body => {
  const json = textEncoder.encode(`${JSON.stringify({ capabilities: capabilitiesJson(capabilities) })}\0`)
  return { size: 4 + json.length, write: (w) => w.u16(major).u16(minor).data(json) }
}

const featureBody = (argsz: number, flags: number, data: Body = empty): Body => ({
  size: 8 + data.size,
  write: (w) => {
    w.u32(argsz).u32(flags >>> 0)
    data.write(w)
  }
})

const stateBody = (state: State, dataFd: number): Body => ({
  size: 8,
  write: (w) => w.u32(StateNumber[state]).u32(dataFd)
})

const u64Body = (v: bigint): Body => ({ size: 8, write: (w) => w.u64(v) })

const dataBody = (data: Uint8Array): Body => ({ size: data.length, write: (w) => w.data(data) })

const probeFlags = (feature: number, get: boolean, set: boolean): number =>
  feature | FeatureOp.PROBE | (get ? FeatureOp.GET : 0) | (set ? FeatureOp.SET : 0)

const requestBody = (r: Request): Body => {
  switch (r._tag) {
    case "Version":
      return versionBody(r.major, r.minor, r.capabilities)
    case "DeviceGetInfo":
      return { size: 16, write: (w) => w.u32(r.argsz).u32(0).u32(0).u32(0) }
    case "GetRegionInfo":
      return { size: RegionInfoSize, write: (w) => w.u32(r.argsz).u32(0).u32(r.index).u32(0).u64(0n).u64(0n) }
    case "GetIrqInfo":
      return { size: IrqInfoSize, write: (w) => w.u32(r.argsz).u32(0).u32(r.index).u32(0) }
    case "RegionRead":
      return { size: 16, write: (w) => w.u64(r.offset).u32(r.region).u32(r.count) }
    case "RegionWrite":
      return { size: 16 + r.data.length, write: (w) => w.u64(r.offset).u32(r.region).u32(r.data.length).data(r.data) }
    case "DeviceReset":
      return empty
    case "GetMigrationFlags":
      return featureBody(r.argsz, FeatureOp.GET | Feature.MIGRATION)
    case "GetDeviceState":
      return featureBody(r.argsz, FeatureOp.GET | Feature.MIG_DEVICE_STATE)
    case "SetDeviceState":
      return featureBody(r.argsz, FeatureOp.SET | Feature.MIG_DEVICE_STATE, stateBody(r.state, r.dataFd))
    case "GetStopCopySize":
      return featureBody(r.argsz, FeatureOp.GET | Feature.MIG_DATA_SIZE)
    case "ProbeFeature":
      return featureBody(r.argsz, probeFlags(r.feature, r.get, r.set), dataBody(r.data))
    case "MigDataRead":
      return { size: 8, write: (w) => w.u32(r.argsz).u32(r.size) }
    case "MigDataWrite":
      return { size: 8 + r.data.length, write: (w) => w.u32(r.argsz).u32(r.data.length).data(r.data) }
  }
}

const replyBody = (r: Reply): Body => {
  switch (r._tag) {
    case "Version":
      return versionBody(r.major, r.minor, r.capabilities)
    case "DeviceGetInfo":
      return { size: 16, write: (w) => w.u32(r.argsz).u32(r.flags).u32(r.numRegions).u32(r.numIrqs) }
    case "GetRegionInfo":
      return {
        size: RegionInfoSize,
        write: (w) => w.u32(r.argsz).u32(r.flags).u32(r.index).u32(r.capOffset).u64(r.size).u64(r.offset)
      }
    case "GetIrqInfo":
      return { size: IrqInfoSize, write: (w) => w.u32(r.argsz).u32(r.flags).u32(r.index).u32(r.count) }
    case "RegionRead":
      return { size: 16 + r.data.length, write: (w) => w.u64(r.offset).u32(r.region).u32(r.data.length).data(r.data) }
    case "RegionWrite":
      return { size: 16, write: (w) => w.u64(r.offset).u32(r.region).u32(r.count) }
    case "DeviceReset":
      return empty
    case "GetMigrationFlags":
      return featureBody(16, FeatureOp.GET | Feature.MIGRATION, u64Body(r.flags))
    case "GetDeviceState":
      return featureBody(16, FeatureOp.GET | Feature.MIG_DEVICE_STATE, stateBody(r.state, r.dataFd))
    case "SetDeviceState":
      return featureBody(16, FeatureOp.SET | Feature.MIG_DEVICE_STATE, stateBody(r.state, r.dataFd))
    case "GetStopCopySize":
      return featureBody(16, FeatureOp.GET | Feature.MIG_DATA_SIZE, u64Body(r.length))
    case "ProbeFeature":
      return featureBody(r.argsz, probeFlags(r.feature, r.get, r.set), dataBody(r.data))
    case "MigDataRead":
      // `padding` zero bytes follow the data: what libvfio-user's clients insist on (off by default).
      return {
        size: 8 + r.data.length + r.padding,
        write: (w) =>
          w
            .u32(8 + r.data.length)
            .u32(r.data.length)
            .data(r.data)
            .zeros(r.padding)
      }
    case "MigDataWrite":
      return empty
  }
}

/** Encodes a command message. Field values are the caller's to get right; nothing is checked. */
export const encodeRequest = (msgId: number, request: Request, options?: { readonly noReply?: boolean }): Uint8Array =>
  message(
    msgId,
    commandOf[request._tag],
    HeaderFlag.TYPE_COMMAND | (options?.noReply === true ? HeaderFlag.NO_REPLY : 0),
    0,
    requestBody(request)
  )

/** Encodes a reply message: a successful reply, or an error reply (header only, with the errno). */
export const encodeReply = (msgId: number, reply: Reply | ErrorReply): Uint8Array =>
  reply._tag === "ErrorReply"
    ? message(msgId, reply.command, HeaderFlag.TYPE_REPLY | HeaderFlag.ERROR, reply.errno, empty)
    : message(msgId, commandOf[reply._tag], HeaderFlag.TYPE_REPLY, 0, replyBody(reply))

// ---------------------------------------------------------------------------------------------
// Decoding

/** Where a field error happened: the message and its direction. */
interface Site {
  readonly command: string
  readonly msgId: number
  readonly direction: Direction
}

type Decoded<A> = Result.Result<A, ProtocolError>

const invalid = (
  site: Site,
  field: string,
  value: number | bigint | string,
  expected: string
): Result.Result<never, ProtocolError> => Result.fail(ProtocolError.fieldInvalid({ ...site, field, value, expected }))

/** The payload must be exactly `size` bytes. */
const exactly = (site: Site, payload: Uint8Array, size: number): Decoded<DataView> =>
  payload.length === size ? Result.succeed(viewOf(payload)) : invalid(site, "payload", payload.length, `${size} bytes`)

/**
 * An info command or reply (DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO): exactly `size`
 * bytes, its `argsz` at least `size` (the kernel's `minsz` rule).
 */
const infoPayload = <A>(
  site: Site,
  payload: Uint8Array,
  size: number,
  decode: (view: DataView, argsz: number) => A
): Decoded<A> =>
  Result.flatMap(exactly(site, payload, size), (view) => {
    const argsz = view.getUint32(0, true)
    return argsz < size ? invalid(site, "argsz", argsz, `at least ${size}`) : Result.succeed(decode(view, argsz))
  })

const viewOf = (payload: Uint8Array): DataView => new DataView(payload.buffer, payload.byteOffset, payload.byteLength)

const unsupported = (site: Site, field: "command" | "flags", value: number): Decoded<never> =>
  Result.fail(ProtocolError.unsupportedCommand({ ...site, field, value }))

const decodeState = (site: Site, view: DataView, at: number): Decoded<State> => {
  const n = view.getUint32(at, true)
  const state = stateOfNumber(n)
  return state === undefined ? invalid(site, "device_state", n, "a migration state 0-7") : Result.succeed(state)
}

const U32 = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xffff_ffff }))

const VersionData = Schema.Struct({
  capabilities: Schema.optionalKey(
    Schema.Struct({
      max_msg_fds: Schema.optionalKey(U32),
      max_data_xfer_size: Schema.optionalKey(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 0xffff_ffff }))),
      migration: Schema.optionalKey(Schema.Struct({ pgsize: Schema.optionalKey(U32) })),
      twin_socket: Schema.optionalKey(
        Schema.Struct({ supported: Schema.optionalKey(Schema.Boolean), fd_index: Schema.optionalKey(U32) })
      )
    })
  )
})

const decodeVersionData = Schema.decodeUnknownResult(Schema.fromJsonString(VersionData))

const textDecoder = new TextDecoder("utf-8", { fatal: true })

const decodeCapabilities = (site: Site, bytes: Uint8Array): Decoded<Capabilities> => {
  if (bytes.length === 0) return Result.succeed({})
  if (bytes.length > MaxVersionJson)
    return invalid(site, "version data", bytes.length, `at most ${MaxVersionJson} bytes`)
  const nul = bytes.indexOf(0)
  if (nul !== bytes.length - 1) return invalid(site, "version data", nul, "JSON terminated by its only NUL byte")
  let text: string
  try {
    text = textDecoder.decode(bytes.subarray(0, nul))
  } catch {
    return invalid(site, "version data", "invalid UTF-8", "UTF-8 JSON")
  }
  const decoded = decodeVersionData(text)
  if (Result.isFailure(decoded))
    return invalid(site, "version data", text, `capabilities JSON (${decoded.failure.message})`)
  const c = decoded.success.capabilities
  if (c === undefined) return Result.succeed({})
  const twin = c.twin_socket
  return Result.succeed({
    ...(c.max_msg_fds === undefined ? {} : { maxMsgFds: c.max_msg_fds }),
    ...(c.max_data_xfer_size === undefined ? {} : { maxDataXferSize: c.max_data_xfer_size }),
    ...(c.migration === undefined
      ? {}
      : { migration: c.migration.pgsize === undefined ? {} : { pgsize: c.migration.pgsize } }),
    ...(twin === undefined
      ? {}
      : {
          twinSocket: {
            ...(twin.supported === undefined ? {} : { supported: twin.supported }),
            ...(twin.fd_index === undefined ? {} : { fdIndex: twin.fd_index })
          }
        })
  })
}

const decodeVersion = (site: Site, payload: Uint8Array): Decoded<ReplyOf<"Version">> => {
  if (payload.length < 4) return invalid(site, "payload", payload.length, "at least 4 bytes")
  const view = viewOf(payload)
  const major = view.getUint16(0, true)
  const minor = view.getUint16(2, true)
  if (major !== 0) return invalid(site, "major", major, "0")
  return Result.map(decodeCapabilities(site, payload.subarray(4)), (capabilities) => ({
    _tag: "Version" as const,
    major,
    minor,
    capabilities
  }))
}

/** What the `flags` of a DEVICE_FEATURE payload ask for. */
type FeatureKind =
  | { readonly _tag: "GetMigrationFlags" | "GetDeviceState" | "SetDeviceState" | "GetStopCopySize" }
  | { readonly _tag: "ProbeFeature"; readonly feature: number; readonly get: boolean; readonly set: boolean }

const featureKind = (site: Site, flags: number): Decoded<FeatureKind> => {
  const feature = flags & FeatureOp.MASK
  const ops = flags - feature
  const get = (ops & FeatureOp.GET) !== 0
  const set = (ops & FeatureOp.SET) !== 0
  if ((ops & ~(FeatureOp.GET | FeatureOp.SET | FeatureOp.PROBE)) !== 0) {
    return invalid(site, "flags", flags, "a feature number with GET, SET or PROBE")
  }
  if ((ops & FeatureOp.PROBE) !== 0) return Result.succeed({ _tag: "ProbeFeature", feature, get, set })
  if (get === set) return invalid(site, "flags", flags, "exactly one of GET and SET, or PROBE")
  if (get && feature === Feature.MIGRATION) return Result.succeed({ _tag: "GetMigrationFlags" })
  if (get && feature === Feature.MIG_DEVICE_STATE) return Result.succeed({ _tag: "GetDeviceState" })
  if (set && feature === Feature.MIG_DEVICE_STATE) return Result.succeed({ _tag: "SetDeviceState" })
  if (get && feature === Feature.MIG_DATA_SIZE) return Result.succeed({ _tag: "GetStopCopySize" })
  return unsupported(site, "flags", flags)
}

/**
 * DEVICE_FEATURE command. GET requests may carry no data (the spec) or an 8-byte data area
 * (what clients modelled on the kernel ioctl send); both are accepted and the area ignored.
 */
const decodeFeatureRequest = (site: Site, payload: Uint8Array): Decoded<Request> => {
  if (payload.length < 8) return invalid(site, "payload", payload.length, "at least 8 bytes")
  const view = viewOf(payload)
  const argsz = view.getUint32(0, true)
  const flags = view.getUint32(4, true)
  const data = payload.length - 8
  return Result.flatMap(featureKind(site, flags), (kind): Decoded<Request> => {
    switch (kind._tag) {
      case "ProbeFeature":
        // The spec says a probe's data area is unused: one sent anyway is accepted and echoed.
        if (argsz < 8) return invalid(site, "argsz", argsz, "at least 8")
        return Result.succeed({ ...kind, argsz, data: payload.slice(8) })
      case "SetDeviceState":
        if (data !== 8) return invalid(site, "payload", payload.length, "16 bytes")
        if (argsz < 16) return invalid(site, "argsz", argsz, "at least 16")
        return Result.map(decodeState(site, view, 8), (state) => ({
          _tag: "SetDeviceState" as const,
          argsz,
          state,
          dataFd: view.getUint32(12, true)
        }))
      default:
        if (data !== 0 && data !== 8) return invalid(site, "payload", payload.length, "8 or 16 bytes")
        if (argsz < 16) return invalid(site, "argsz", argsz, "at least 16")
        return Result.succeed({ _tag: kind._tag, argsz })
    }
  })
}

/**
 * DEVICE_FEATURE reply: the fixed part echoed, plus the feature data of a GET. A probe's reply
 * echoes the request's payload, so its `argsz` and data area are checked against the request
 * (`matchReply`), not here.
 */
const decodeFeatureReply = (site: Site, payload: Uint8Array): Decoded<Reply> => {
  if (payload.length < 8) return invalid(site, "payload", payload.length, "at least 8 bytes")
  const view = viewOf(payload)
  const argsz = view.getUint32(0, true)
  const flags = view.getUint32(4, true)
  return Result.flatMap(featureKind(site, flags), (kind): Decoded<Reply> => {
    if (kind._tag === "ProbeFeature") {
      if (argsz < 8) return invalid(site, "argsz", argsz, "at least 8")
      return Result.succeed({ ...kind, argsz, data: payload.slice(8) })
    }
    if (payload.length !== 16) return invalid(site, "payload", payload.length, "16 bytes")
    if (argsz !== 16) return invalid(site, "argsz", argsz, "16")
    switch (kind._tag) {
      case "GetMigrationFlags":
        return Result.succeed({ _tag: "GetMigrationFlags", flags: view.getBigUint64(8, true) })
      case "GetStopCopySize":
        return Result.succeed({ _tag: "GetStopCopySize", length: view.getBigUint64(8, true) })
      case "GetDeviceState":
      case "SetDeviceState": {
        const tag = kind._tag
        return Result.map(decodeState(site, view, 8), (state) => ({
          _tag: tag,
          state,
          dataFd: view.getUint32(12, true)
        }))
      }
    }
  })
}

const checkType = (site: Site, header: Header, expected: number): Decoded<CommandName> => {
  const type = header.flags & HeaderFlag.TYPE_MASK
  if (type !== expected) {
    return invalid(site, "flags.type", type, expected === HeaderFlag.TYPE_REPLY ? "1 (reply)" : "0 (command)")
  }
  const name = commandOfNumber(header.command)
  if (name === undefined) {
    return Result.fail(ProtocolError.unknownCommand({ ...site, field: "command", value: header.command }))
  }
  return Result.succeed(name)
}

const siteOf = (header: Header, direction: Direction): Site => ({
  command: commandLabel(header.command),
  msgId: header.msgId,
  direction
})

const withinXfer = (site: Site, field: string, count: number, limits: Limits): Decoded<number> =>
  count > limits.maxDataXferSize
    ? invalid(site, field, count, `at most max_data_xfer_size = ${limits.maxDataXferSize}`)
    : Result.succeed(count)

/**
 * A region access that carries its data (REGION_WRITE's command, REGION_READ's reply): offset,
 * region, count, then exactly `count` bytes, at most max_data_xfer_size of them.
 */
const regionWithData = (
  site: Site,
  payload: Uint8Array,
  limits: Limits
): Decoded<{ readonly offset: bigint; readonly region: number; readonly data: Uint8Array }> => {
  if (payload.length < 16) return invalid(site, "payload", payload.length, "at least 16 bytes")
  const view = viewOf(payload)
  const count = view.getUint32(12, true)
  if (payload.length !== 16 + count) return invalid(site, "count", count, `${payload.length - 16} (the data sent)`)
  return Result.map(withinXfer(site, "count", count, limits), () => ({
    offset: view.getBigUint64(0, true),
    region: view.getUint32(8, true),
    data: payload.subarray(16)
  }))
}

/**
 * Decodes a command message (what a server receives). Strict: the message must be a command,
 * its command one this package carries, its payload the exact size of that command, and
 * every count within `limits.maxDataXferSize`.
 */
export const decodeRequest = (frame: Frame, limits: Limits): Decoded<Request> => {
  const { header, payload } = frame
  const site = siteOf(header, "command")
  if ((header.flags & HeaderFlag.ERROR) !== 0) return invalid(site, "flags.error", header.flags, "clear in a command")
  return Result.flatMap(checkType(site, header, HeaderFlag.TYPE_COMMAND), (name): Decoded<Request> => {
    switch (name) {
      case "VERSION":
        return decodeVersion(site, payload)
      case "DEVICE_GET_INFO":
        return infoPayload(site, payload, 16, (_, argsz) => ({ _tag: "DeviceGetInfo" as const, argsz }))
      case "DEVICE_GET_REGION_INFO":
        return infoPayload(site, payload, RegionInfoSize, (view, argsz) => ({
          _tag: "GetRegionInfo" as const,
          argsz,
          index: view.getUint32(8, true)
        }))
      case "DEVICE_GET_IRQ_INFO":
        return infoPayload(site, payload, IrqInfoSize, (view, argsz) => ({
          _tag: "GetIrqInfo" as const,
          argsz,
          index: view.getUint32(8, true)
        }))
      case "REGION_READ":
        return Result.flatMap(exactly(site, payload, 16), (view) =>
          Result.map(withinXfer(site, "count", view.getUint32(12, true), limits), (count) => ({
            _tag: "RegionRead" as const,
            offset: view.getBigUint64(0, true),
            region: view.getUint32(8, true),
            count
          }))
        )
      case "REGION_WRITE":
        return Result.map(regionWithData(site, payload, limits), (access) => ({
          _tag: "RegionWrite" as const,
          ...access
        }))
      case "DEVICE_RESET":
        return Result.map(exactly(site, payload, 0), () => ({ _tag: "DeviceReset" as const }))
      case "DEVICE_FEATURE":
        return decodeFeatureRequest(site, payload)
      case "MIG_DATA_READ":
        return Result.flatMap(exactly(site, payload, 8), (view) => {
          const argsz = view.getUint32(0, true)
          return Result.flatMap(withinXfer(site, "size", view.getUint32(4, true), limits), (size) =>
            argsz < 8 + size
              ? invalid(site, "argsz", argsz, `at least 8 + size = ${8 + size}`)
              : Result.succeed({ _tag: "MigDataRead" as const, argsz, size })
          )
        })
      case "MIG_DATA_WRITE": {
        if (payload.length < 8) return invalid(site, "payload", payload.length, "at least 8 bytes")
        const view = viewOf(payload)
        const size = view.getUint32(4, true)
        if (payload.length !== 8 + size) return invalid(site, "size", size, `${payload.length - 8} (the data sent)`)
        return Result.map(withinXfer(site, "size", size, limits), () => ({
          _tag: "MigDataWrite" as const,
          argsz: view.getUint32(0, true),
          data: payload.subarray(8)
        }))
      }
      default:
        return unsupported(site, "command", header.command)
    }
  })
}

/**
 * Decodes a reply message (what a client receives). Strict: the message must be a reply; an
 * error reply carries no payload; a successful reply has the exact size of its command's
 * reply, and every declared length matches the data that came with it.
 */
export const decodeReply = (frame: Frame, limits: Limits): Decoded<Reply | ErrorReply> => {
  const { header, payload } = frame
  const site = siteOf(header, "reply")
  return Result.flatMap(checkType(site, header, HeaderFlag.TYPE_REPLY), (name): Decoded<Reply | ErrorReply> => {
    if ((header.flags & HeaderFlag.ERROR) !== 0) {
      return payload.length === 0
        ? Result.succeed({ _tag: "ErrorReply", command: header.command, errno: header.error })
        : invalid(site, "payload", payload.length, "0 bytes in an error reply")
    }
    switch (name) {
      case "VERSION":
        return decodeVersion(site, payload)
      case "DEVICE_GET_INFO":
        return infoPayload(site, payload, 16, (view, argsz) => ({
          _tag: "DeviceGetInfo" as const,
          argsz,
          flags: view.getUint32(4, true),
          numRegions: view.getUint32(8, true),
          numIrqs: view.getUint32(12, true)
        }))
      case "DEVICE_GET_REGION_INFO":
        return infoPayload(site, payload, RegionInfoSize, (view, argsz) => ({
          _tag: "GetRegionInfo" as const,
          argsz,
          flags: view.getUint32(4, true),
          index: view.getUint32(8, true),
          capOffset: view.getUint32(12, true),
          size: view.getBigUint64(16, true),
          offset: view.getBigUint64(24, true)
        }))
      case "DEVICE_GET_IRQ_INFO":
        return infoPayload(site, payload, IrqInfoSize, (view, argsz) => ({
          _tag: "GetIrqInfo" as const,
          argsz,
          flags: view.getUint32(4, true),
          index: view.getUint32(8, true),
          count: view.getUint32(12, true)
        }))
      case "REGION_READ":
        return Result.map(regionWithData(site, payload, limits), (access) => ({
          _tag: "RegionRead" as const,
          ...access
        }))
      case "REGION_WRITE":
        return Result.map(exactly(site, payload, 16), (view) => ({
          _tag: "RegionWrite" as const,
          offset: view.getBigUint64(0, true),
          region: view.getUint32(8, true),
          count: view.getUint32(12, true)
        }))
      case "DEVICE_RESET":
        return Result.map(exactly(site, payload, 0), () => ({ _tag: "DeviceReset" as const }))
      case "DEVICE_FEATURE":
        return decodeFeatureReply(site, payload)
      case "MIG_DATA_READ": {
        // `argsz` and `size` give the real count. Bytes after the data are padding (libvfio-user
        // pads every reply to 8 + the size asked); `matchReply` bounds them by the request.
        if (payload.length < 8) return invalid(site, "payload", payload.length, "at least 8 bytes")
        const view = viewOf(payload)
        const argsz = view.getUint32(0, true)
        const size = view.getUint32(4, true)
        if (payload.length < 8 + size)
          return invalid(site, "size", size, `at most ${payload.length - 8} (the data sent)`)
        if (argsz !== 8 + size) return invalid(site, "argsz", argsz, `8 + size = ${8 + size}`)
        return Result.map(withinXfer(site, "size", size, limits), () => ({
          _tag: "MigDataRead" as const,
          data: payload.subarray(8, 8 + size),
          padding: payload.length - 8 - size
        }))
      }
      case "MIG_DATA_WRITE":
        return Result.map(exactly(site, payload, 0), () => ({ _tag: "MigDataWrite" as const }))
      default:
        return unsupported(site, "command", header.command)
    }
  })
}

const mismatch = (
  request: Request,
  msgId: number,
  field: string,
  value: number | bigint | string,
  expected: number | bigint | string
): ProtocolError =>
  ProtocolError.replyMismatch({ command: commandLabel(commandOf[request._tag]), msgId, field, value, expected })

/** The field of a same-tag reply that contradicts its request, if any. */
const contradiction = (request: Request, msgId: number, reply: Reply): ProtocolError | undefined => {
  const fail = (field: string, value: number | bigint | string, expected: number | bigint | string) =>
    mismatch(request, msgId, field, value, expected)
  if (request._tag === "Version" && reply._tag === "Version" && reply.minor > request.minor) {
    return fail("minor", reply.minor, `at most ${request.minor}`)
  }
  if (request._tag === "GetRegionInfo" && reply._tag === "GetRegionInfo" && reply.index !== request.index) {
    return fail("index", reply.index, request.index)
  }
  if (request._tag === "GetIrqInfo" && reply._tag === "GetIrqInfo" && reply.index !== request.index) {
    return fail("index", reply.index, request.index)
  }
  if (request._tag === "RegionRead" && reply._tag === "RegionRead") {
    if (reply.region !== request.region) return fail("region", reply.region, request.region)
    if (reply.offset !== request.offset) return fail("offset", reply.offset, request.offset)
    if (reply.data.length !== request.count) return fail("count", reply.data.length, request.count)
  }
  if (request._tag === "RegionWrite" && reply._tag === "RegionWrite") {
    if (reply.region !== request.region) return fail("region", reply.region, request.region)
    if (reply.offset !== request.offset) return fail("offset", reply.offset, request.offset)
    if (reply.count !== request.data.length) return fail("count", reply.count, request.data.length)
  }
  if (request._tag === "SetDeviceState" && reply._tag === "SetDeviceState" && reply.state !== request.state) {
    return fail("device_state", StateNumber[reply.state], StateNumber[request.state])
  }
  if (request._tag === "ProbeFeature" && reply._tag === "ProbeFeature") {
    const got = probeFlags(reply.feature, reply.get, reply.set)
    const want = probeFlags(request.feature, request.get, request.set)
    if (got !== want) return fail("flags", got, want)
    // The spec: a probe's reply payload is the request's.
    if (reply.argsz !== request.argsz) return fail("argsz", reply.argsz, request.argsz)
    if (reply.data.length !== request.data.length)
      return fail("payload", 8 + reply.data.length, `${8 + request.data.length} (the request's payload echoed)`)
  }
  if (request._tag === "MigDataRead" && reply._tag === "MigDataRead") {
    if (reply.data.length > request.size)
      return fail("size", reply.data.length, `at most ${request.size} (the size asked)`)
    const body = 8 + reply.data.length + reply.padding
    if (reply.padding > 0 && body > 8 + request.size)
      return fail("payload", body, `at most 8 + ${request.size} bytes (padding only up to the size asked)`)
  }
  return undefined
}

/**
 * Checks that a decoded reply answers `request`, sent as `msgId`: the same msg_id and
 * command, the same operation (for DEVICE_FEATURE, the same feature and GET/SET/PROBE), and
 * fields consistent with the request (region, offset, counts, state, at most the data asked for).
 */
export const matchReply = <R extends Request>(
  request: R,
  msgId: number,
  header: Header,
  reply: Reply | ErrorReply
): Result.Result<ReplyOf<R["_tag"]> | ErrorReply, ProtocolError> => {
  if (header.msgId !== msgId) return Result.fail(mismatch(request, msgId, "msg_id", header.msgId, msgId))
  const command = commandOf[request._tag]
  if (header.command !== command) {
    return Result.fail(mismatch(request, msgId, "command", commandLabel(header.command), commandLabel(command)))
  }
  if (reply._tag === "ErrorReply") return Result.succeed(reply)
  const operation = reply._tag
  if (isReplyTo<R["_tag"]>(request._tag, reply)) {
    const wrong = contradiction(request, msgId, reply)
    return wrong === undefined ? Result.succeed(reply) : Result.fail(wrong)
  }
  return Result.fail(mismatch(request, msgId, "operation", operation, request._tag))
}
