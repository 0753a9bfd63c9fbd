import {
  arcOf,
  type Device,
  DeviceError,
  type DeviceKind,
  type PrecopyInfo,
  type ReadResult,
  type SessionOperation
} from "@lockstep/device"
import { type Flags, flagNames, isArc, type State } from "@lockstep/fsm"
import { Duration, Effect, type Scope } from "effect"
import { limitsFor } from "./Codec.js"
import {
  type Connection,
  describeRequestError,
  openConnection,
  type RequestError,
  type ServerError,
  type VfioUserConnectFailed
} from "./Connection.js"
import {
  type Capabilities,
  DefaultMaxDataXferSize,
  HeaderSize,
  IrqInfoSize,
  isCount,
  MaxMessageSize,
  NoDataFd,
  ProtocolVersion,
  RegionInfoSize
} from "./Message.js"
import { ProtocolError } from "./ProtocolError.js"

/** Options of {@link connect}. */
export interface ClientOptions {
  /** Path of the server's UNIX socket. */
  readonly path: string
  /** The device id reported in errors and to the coordinator (default: the socket path). */
  readonly id?: string
  /** The device kind; vfio-user does not carry it (default `"pci"`). */
  readonly kind?: DeviceKind
  /** How long to wait for the connection and for each reply before the device counts as unreachable (default 5 s). */
  readonly timeout?: Duration.Input
  /** The `max_data_xfer_size` this client proposes, bounding what it accepts in one reply (default 1 MiB). */
  readonly maxDataXferSize?: number
  /**
   * The STOP_COPY data length (bytes, a non-negative integer) to assume for a server that does
   * not implement MIG_DATA_SIZE (it answers EINVAL, EOPNOTSUPP, ENOSYS or ENOTTY): exposed as
   * the device's `stopCopyLengthEstimate`. `stopCopyLength` itself then fails with EOPNOTSUPP,
   * so that a migration knows the figure is an estimate.
   */
  readonly stopCopyLengthEstimate?: number
}

/** `VFIO_DEVICE_GET_INFO` as the server answered it. */
export interface DeviceInfo {
  /** `VFIO_DEVICE_FLAGS_*` (see `DeviceInfoFlag`). */
  readonly flags: number
  readonly numRegions: number
  readonly numIrqs: number
}

/** `vfio_irq_info` of one interrupt index. */
export interface IrqInfo {
  readonly index: number
  /** `VFIO_IRQ_INFO_*` bits. */
  readonly flags: number
  /** Interrupts of this type; 0 when the device has none. */
  readonly count: number
}

/** `vfio_region_info` of one region (capabilities are never requested). */
export interface RegionInfo {
  readonly index: number
  /** `VFIO_REGION_INFO_FLAG_*` (see `RegionInfoFlag`). */
  readonly flags: number
  readonly size: bigint
  readonly offset: bigint
  /** Size of the full answer the server has (more than 32 when it has region capabilities). */
  readonly argsz: number
}

/** What the connection negotiated and learned about the device. */
export interface ServerInfo {
  readonly version: { readonly major: number; readonly minor: number }
  /** The capabilities the server answered with. */
  readonly capabilities: Capabilities
  /** Largest data transfer the server accepts in one message. */
  readonly maxDataXferSize: number
  /** Largest migration or region data this client moves in one message: within 64 KiB and both peers' limits. */
  readonly chunkSize: number
  readonly device: DeviceInfo
  /**
   * Why DEVICE_FEATURE GET MIGRATION failed, if it did: the server then has no migration
   * support and the device's flags are 0.
   */
  readonly migrationError: ServerError | undefined
}

/**
 * A device reached over vfio-user: the `Device` port plus the region access and facts of the
 * protocol. Requests are sent one at a time (each waits for its reply before the next is
 * sent); calls from concurrent fibers queue.
 */
export interface VfioUserDevice extends Device {
  readonly server: ServerInfo
  /** Always false: the vfio-user spec has no pre-copy info message, hence no v2 opt-in (no REINIT). */
  readonly enablePrecopyInfoV2: Effect.Effect<boolean>
  /** GET_REGION_INFO of one region (`argsz` 32: no capabilities, no file descriptor). */
  readonly regionInfo: (index: number) => Effect.Effect<RegionInfo, RequestError>
  /** GET_IRQ_INFO of one interrupt index. */
  readonly irqInfo: (index: number) => Effect.Effect<IrqInfo, RequestError>
  /** Reads `count` bytes of a region, in as many REGION_READ messages as the limits need. */
  readonly regionRead: (region: number, offset: bigint, count: number) => Effect.Effect<Uint8Array, RequestError>
  /** Writes bytes into a region, in as many REGION_WRITE messages as the limits need. */
  readonly regionWrite: (region: number, offset: bigint, data: Uint8Array) => Effect.Effect<void, RequestError>
}

/** Error codes with which a server says it does not implement MIG_DATA_SIZE. */
const unimplemented = new Set(["EINVAL", "EOPNOTSUPP", "ENOTSUP", "ENOSYS", "ENOTTY"])

/** Fixed bytes before the data of a MIG_DATA_READ/WRITE message and of a REGION_READ/WRITE message. */
const migDataOverhead = HeaderSize + 8
const regionOverhead = HeaderSize + 16

/** The state reported when the device cannot tell its own: ERROR, the reading that assumes the worst. */
const unknownState: State = "ERROR"

/** What every operation of a client's device shares: its connection, its name, and how its failures read. */
const clientContext = (conn: Connection, options: ClientOptions) => {
  const device = options.id ?? options.path
  const socket = options.path
  const describe = (error: RequestError): string => describeRequestError(socket, error)
  const unreachable = (operation: string, error: RequestError) =>
    DeviceError.unreachable({ device, operation, reason: describe(error) })

  const readState = conn.call({ _tag: "GetDeviceState", argsz: 16 }).pipe(Effect.map((reply) => reply.state))

  /**
   * The state to report in an error, read back from the device. If even that fails, ERROR
   * (the reading that assumes the worst), with the reason appended to the error's.
   */
  const readBack: Effect.Effect<{ readonly state: State; readonly note: string }> = readState.pipe(
    Effect.map((state) => ({ state, note: "" })),
    Effect.catch((error) =>
      Effect.succeed({ state: unknownState, note: `; state unknown, reported as ERROR (${describe(error)})` })
    )
  )

  const sessionFailed = (
    operation: SessionOperation,
    code: string,
    reason: string
  ): Effect.Effect<never, DeviceError> =>
    readBack.pipe(
      Effect.flatMap(({ state, note }) =>
        Effect.fail(DeviceError.sessionFailed({ device, operation, code, reason: reason + note, state }))
      )
    )

  /** Maps a request failure of a data or query operation to the port's errors. */
  const inSession =
    (operation: SessionOperation) =>
    (error: RequestError): Effect.Effect<never, DeviceError> =>
      error._tag === "ServerError"
        ? sessionFailed(operation, error.code, error.message)
        : Effect.fail(unreachable(operation, error))

  return { conn, device, socket, describe, unreachable, readState, readBack, sessionFailed, inSession }
}

type ClientContext = ReturnType<typeof clientContext>

/** The device's state: read, and moved by one legal arc. */
const stateOps = (context: ClientContext, flags: Flags) => {
  const { conn, device, unreachable, readState, readBack } = context

  const getState = readState.pipe(
    Effect.catch(
      (error): Effect.Effect<never, DeviceError> =>
        error._tag === "ServerError"
          ? Effect.fail(
              DeviceError.sessionFailed({
                device,
                operation: "getState",
                code: error.code,
                reason: `${error.message}; state unknown, reported as ERROR`,
                state: unknownState
              })
            )
          : Effect.fail(unreachable("getState", error))
    ),
    Effect.withSpan("VfioUser.getState")
  )

  const setState = Effect.fn("VfioUser.setState")(function* (to: State) {
    const from = yield* getState
    const arc = arcOf(from, to)
    if (!isArc(flags, from, to)) {
      return yield* DeviceError.arcRejected({
        device,
        arc,
        code: "EINVAL",
        reason: `not a single legal arc for a device with flags [${flagNames(flags).join(", ")}]`
      })
    }
    yield* conn.call({ _tag: "SetDeviceState", argsz: 16, state: to, dataFd: NoDataFd }).pipe(
      Effect.catch(
        (error): Effect.Effect<never, DeviceError> =>
          error._tag === "ServerError"
            ? readBack.pipe(
                Effect.flatMap(({ state, note }) =>
                  Effect.fail(
                    DeviceError.arcFailed({
                      device,
                      arc,
                      code: error.code,
                      reason: error.message + note,
                      stateAfter: state
                    })
                  )
                )
              )
            : Effect.fail(unreachable("setState", error))
      )
    )
  })

  return { getState, setState }
}

/** The migration data: read in chunks on the saving side, written on the resuming side. */
const migrationData = (context: ClientContext, server: ServerInfo, getState: Effect.Effect<State, DeviceError>) => {
  const { conn, device, socket, unreachable, sessionFailed, inSession } = context

  // `read`'s optional lent buffer (the port's `into`) is ignored: the bytes arrive inside the
  // MIG_DATA_READ reply, a buffer of the connection's own, and are answered as a view of it.
  const read = Effect.fn("VfioUser.read")(function* (maxBytes: number) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
      return yield* sessionFailed("read", "EINVAL", `maxBytes must be a positive integer, got ${maxBytes}`)
    }
    const size = Math.min(maxBytes, server.chunkSize)
    const reply = yield* conn.call({ _tag: "MigDataRead", argsz: 8 + size, size }).pipe(Effect.catch(inSession("read")))
    if (reply.data.length > 0) return { _tag: "Chunk", data: reply.data } satisfies ReadResult
    // An empty read ends the stream in STOP_COPY and means "nothing for now" in pre-copy.
    const state = yield* getState
    if (state === "STOP_COPY") return { _tag: "End" } satisfies ReadResult
    if (state === "PRE_COPY" || state === "PRE_COPY_P2P") return { _tag: "NoData" } satisfies ReadResult
    return yield* Effect.fail(
      DeviceError.sessionFailed({
        device,
        operation: "read",
        code: "EINVAL",
        reason: `vfio-user server ${socket} answered MIG_DATA_READ with no data in ${state}; expected a saving state (PRE_COPY, STOP_COPY)`,
        state
      })
    )
  })

  const write = Effect.fn("VfioUser.write")(function* (data: Uint8Array) {
    for (let at = 0; at < data.length; at += server.chunkSize) {
      const part = data.subarray(at, at + server.chunkSize)
      yield* conn
        .call({ _tag: "MigDataWrite", argsz: 8 + part.length, data: part })
        .pipe(
          Effect.catch(
            (error): Effect.Effect<never, DeviceError> =>
              error._tag === "ServerError"
                ? sessionFailed("write", error.code, `${error.message} (after ${at} of ${data.length} bytes)`)
                : Effect.fail(unreachable("write", error))
          )
        )
    }
  })

  return { read, write }
}

/** What the server can say about the migration data: no pre-copy info, a stop-copy length if it implements it. */
const migrationInfo = (context: ClientContext) => {
  const { conn, unreachable, sessionFailed } = context

  const precopyInfo: Effect.Effect<PrecopyInfo, DeviceError> = sessionFailed(
    "precopyInfo",
    "EOPNOTSUPP",
    "vfio-user has no message for VFIO_MIG_GET_PRECOPY_INFO"
  ).pipe(Effect.withSpan("VfioUser.precopyInfo"))

  // The vfio-user spec has no message for pre-copy info, so none for its v2 opt-in
  // (VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2) either: a vfio-user device declines it and never
  // reports REINIT. Its data still reaches the destination whole in STOP_COPY.
  const enablePrecopyInfoV2: Effect.Effect<boolean> = Effect.succeed(false)

  // A server without MIG_DATA_SIZE answers one of several codes; the port's word for "cannot
  // tell" is EOPNOTSUPP, so that callers fall back to an estimate knowing it is one.
  const stopCopyLength = conn.call({ _tag: "GetStopCopySize", argsz: 16 }).pipe(
    Effect.catch((error): Effect.Effect<never, DeviceError> => {
      if (error._tag !== "ServerError") return Effect.fail(unreachable("stopCopyLength", error))
      if (unimplemented.has(error.code))
        return sessionFailed(
          "stopCopyLength",
          "EOPNOTSUPP",
          `${error.message}: the server does not implement MIG_DATA_SIZE (an optional feature)`
        )
      return sessionFailed("stopCopyLength", error.code, error.message)
    }),
    Effect.flatMap(
      (reply): Effect.Effect<number, DeviceError> =>
        reply.length > BigInt(Number.MAX_SAFE_INTEGER)
          ? sessionFailed("stopCopyLength", "EOVERFLOW", `stop_copy_length ${reply.length} is not a safe integer`)
          : Effect.succeed(Number(reply.length))
    ),
    Effect.withSpan("VfioUser.stopCopyLength")
  )

  return { precopyInfo, enablePrecopyInfoV2, stopCopyLength }
}

/**
 * DEVICE_RESET, then the state read back and acted on: real servers differ from the spec here
 * (libvfio-user refuses a reset in STOP/STOP_COPY and, where it accepts one, leaves the
 * migration state as it was). RUNNING is a reset done; PRE_COPY still has its saving session
 * open, which PRE_COPY → RUNNING closes without the device changing P2P class. Any other state
 * is reported, never walked out of: leaving a halted or quiesced state would let the device
 * DMA into peers that may be halted, which a reset (bus mastering off) never does.
 */
const resetOf = (context: ClientContext) => {
  const { conn, device, socket, describe, unreachable, readBack } = context
  return Effect.gen(function* () {
    const refused = yield* conn.call({ _tag: "DeviceReset" }).pipe(
      Effect.as(undefined),
      Effect.catch((error) =>
        error._tag === "ServerError" ? Effect.succeed(error) : Effect.fail(unreachable("reset", error))
      )
    )
    const { state, note } = yield* readBack
    if (refused !== undefined)
      return yield* DeviceError.resetFailed({
        device,
        code: refused.code,
        reason: `${refused.message}; the device is still in ${state}${note}`
      })
    if (state === "RUNNING") return
    if (state === "PRE_COPY") {
      yield* conn.call({ _tag: "SetDeviceState", argsz: 16, state: "RUNNING", dataFd: NoDataFd }).pipe(
        Effect.mapError((error) =>
          DeviceError.resetFailed({
            device,
            code: error._tag === "ServerError" ? error.code : "EIO",
            reason: `vfio-user server ${socket} accepted DEVICE_RESET but left the device in PRE_COPY, and closing its saving session failed: ${describe(error)}`
          })
        )
      )
      return
    }
    return yield* DeviceError.resetFailed({
      device,
      code: "EIO",
      reason: `vfio-user server ${socket} accepted DEVICE_RESET but the device is in ${state}${note}, expected RUNNING (a reset returns a device to RUNNING); it was left there`
    })
  }).pipe(Effect.withSpan("VfioUser.reset"))
}

/** The device's regions and interrupts: their info, and region data in messages within both peers' limits. */
const regionOps = (conn: Connection, options: ClientOptions, server: ServerInfo) => {
  const regionInfo = Effect.fn("VfioUser.regionInfo")(function* (index: number) {
    const reply = yield* conn.call({ _tag: "GetRegionInfo", argsz: RegionInfoSize, index })
    return { index: reply.index, flags: reply.flags, size: reply.size, offset: reply.offset, argsz: reply.argsz }
  })

  const irqInfo = Effect.fn("VfioUser.irqInfo")(function* (index: number) {
    const reply = yield* conn.call({ _tag: "GetIrqInfo", argsz: IrqInfoSize, index })
    return { index: reply.index, flags: reply.flags, count: reply.count }
  })

  const regionChunk = Math.min(
    MaxMessageSize - regionOverhead,
    server.maxDataXferSize,
    options.maxDataXferSize ?? DefaultMaxDataXferSize
  )

  const regionRead = Effect.fn("VfioUser.regionRead")(function* (region: number, offset: bigint, count: number) {
    const out = new Uint8Array(count)
    for (let at = 0; at < count; at += regionChunk) {
      const part = Math.min(regionChunk, count - at)
      const reply = yield* conn.call({ _tag: "RegionRead", offset: offset + BigInt(at), region, count: part })
      out.set(reply.data, at)
    }
    return out
  })

  const regionWrite = Effect.fn("VfioUser.regionWrite")(function* (region: number, offset: bigint, data: Uint8Array) {
    for (let at = 0; at < data.length; at += regionChunk) {
      const part = data.subarray(at, at + regionChunk)
      yield* conn.call({ _tag: "RegionWrite", offset: offset + BigInt(at), region, data: part })
    }
  })

  return { regionInfo, irqInfo, regionRead, regionWrite }
}

const makeDevice = (conn: Connection, options: ClientOptions, server: ServerInfo, flags: Flags): VfioUserDevice => {
  const context = clientContext(conn, options)
  const { getState, setState } = stateOps(context, flags)
  return {
    id: context.device,
    kind: options.kind ?? "pci",
    flags,
    server,
    getState,
    setState,
    ...migrationData(context, server, getState),
    ...migrationInfo(context),
    ...(options.stopCopyLengthEstimate === undefined ? {} : { stopCopyLengthEstimate: options.stopCopyLengthEstimate }),
    reset: resetOf(context),
    ...regionOps(conn, options, server)
  }
}

/**
 * Connects to a vfio-user server and negotiates: VERSION 0.2 (proposing no file descriptors
 * and no twin socket), DEVICE_GET_INFO, and DEVICE_FEATURE GET MIGRATION for the migration
 * flags (a server that refuses it has no migration support: flags 0). The device is usable
 * until the scope closes, which closes the socket.
 *
 * Every reply is checked (size, fields, msg_id, command); a protocol violation closes the
 * connection. Through the `Device` port, an error reply becomes the port's error for the
 * operation (with the errno name as `code`), and everything else (a closed socket, a silent
 * server past the timeout, a protocol violation) becomes `DeviceError`.
 */
export const connect = Effect.fn("VfioUser.connect")(function* (
  options: ClientOptions
): Effect.fn.Return<VfioUserDevice, VfioUserConnectFailed | RequestError, Scope.Scope> {
  const own = options.maxDataXferSize ?? DefaultMaxDataXferSize
  if (!isCount(own, 1)) return yield* Effect.die(new RangeError(`maxDataXferSize must be a u32 above 0, got ${own}`))
  const estimate = options.stopCopyLengthEstimate
  if (estimate !== undefined && !(Number.isSafeInteger(estimate) && estimate >= 0)) {
    return yield* Effect.die(
      new RangeError(`stopCopyLengthEstimate must be a non-negative safe integer, got ${estimate}`)
    )
  }
  const conn = yield* openConnection({
    path: options.path,
    limits: limitsFor(own),
    timeout: options.timeout ?? Duration.seconds(5)
  })
  const version = yield* conn.call({
    _tag: "Version",
    major: ProtocolVersion.major,
    minor: ProtocolVersion.minor,
    capabilities: { maxMsgFds: 0, maxDataXferSize: own }
  })
  if (version.capabilities.twinSocket?.supported === true) {
    return yield* ProtocolError.fieldInvalid({
      command: "VERSION",
      msgId: 0,
      direction: "reply",
      field: "capabilities.twin_socket.supported",
      value: "true",
      expected: "absent or false: twin-socket mode was not proposed"
    })
  }
  const info = yield* conn.call({ _tag: "DeviceGetInfo", argsz: 16 })
  const migration = yield* conn.call({ _tag: "GetMigrationFlags", argsz: 16 }).pipe(
    Effect.map((reply) => ({ flags: Number(reply.flags & 7n), error: undefined })),
    Effect.catchTag("ServerError", (error) => Effect.succeed({ flags: 0, error }))
  )
  const maxDataXferSize = version.capabilities.maxDataXferSize ?? DefaultMaxDataXferSize
  const server: ServerInfo = {
    version: { major: version.major, minor: version.minor },
    capabilities: version.capabilities,
    maxDataXferSize,
    chunkSize: Math.min(MaxMessageSize - migDataOverhead, maxDataXferSize, own),
    device: { flags: info.flags, numRegions: info.numRegions, numIrqs: info.numIrqs },
    migrationError: migration.error
  }
  return makeDevice(conn, options, server, migration.flags)
})
