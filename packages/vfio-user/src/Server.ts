import { rmSync } from "node:fs"
import * as net from "node:net"
import type { Device, DeviceError, DeviceKind } from "@lockstep/device"
import { hasFlag, type State, path as transitionPath } from "@lockstep/fsm"
import { type Cause, Data, Deferred, Effect, Queue, Ref, Result, type Scope } from "effect"
import { decodeRequest, encodeReply, FrameDecoder, type Limits, limitsFor } from "./Codec.js"
import { errnoOfCode, errnoOfDeviceError } from "./Errno.js"
import {
  type Capabilities,
  DefaultMaxDataXferSize,
  DeviceInfoFlag,
  type ErrorReply,
  Feature,
  type Frame,
  HeaderFlag,
  isCount,
  NoDataFd,
  ProtocolVersion,
  RegionInfoFlag,
  RegionInfoSize,
  type Reply,
  type Request
} from "./Message.js"
import type { ProtocolError } from "./ProtocolError.js"

/** The socket could not be listened on (e.g. the path exists: a stale socket file is never removed for you). */
export class ListenFailed extends Data.TaggedError("ListenFailed")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `cannot listen on vfio-user socket ${this.path}: ${this.reason}`
  }
}

/** Options of {@link serve}. */
export interface ServerOptions {
  /** Path of the UNIX socket to create. */
  readonly path: string
  /** The device to expose. */
  readonly device: Device
  /** The `max_data_xfer_size` the server announces and enforces on requests (default 1 MiB). */
  readonly maxDataXferSize?: number
  /**
   * Contents of the PCI config-space region (index 7), which clients may read and write
   * (default: 256 zero bytes). The buffer is copied.
   */
  readonly configSpace?: Uint8Array
  /** Connections accepted while another is served, beyond which new ones are closed (default 8). */
  readonly backlog?: number
}

/** A running vfio-user server. */
export interface VfioUserServer {
  readonly path: string
  /** Connections taken up for serving so far (the current one included). */
  readonly served: Effect.Effect<number>
}

/**
 * The regions of a vfio-pci device (`VFIO_PCI_NUM_REGIONS`): BARs 0-5, ROM, config space,
 * VGA. Only config space has content here; the other regions exist with size 0.
 */
const RegionCount = 9
const ConfigRegion = 7

/** Page size announced for migration (`"migration":{"pgsize":4096}`). */
const PageSize = 4096

/** Messages buffered per connection before reading from the socket pauses. */
const InboxHighWater = 8

const errno = (code: string, fallback: number): number => errnoOfCode(code) ?? fallback
const EINVAL = errno("EINVAL", 22)
const EIO = errno("EIO", 5)
const EOPNOTSUPP = errno("EOPNOTSUPP", 95)

const kindFlag: Record<DeviceKind, number> = {
  pci: DeviceInfoFlag.PCI,
  mdev: DeviceInfoFlag.PCI,
  ccw: DeviceInfoFlag.CCW,
  ap: DeviceInfoFlag.AP
}

/** The features (and their operations) the server implements, for PROBE. */
const probeable: ReadonlyMap<number, { readonly get: boolean; readonly set: boolean }> = new Map([
  [Feature.MIGRATION, { get: true, set: false }],
  [Feature.MIG_DEVICE_STATE, { get: true, set: true }],
  [Feature.MIG_DATA_SIZE, { get: true, set: false }]
])

type Answer = Reply | ErrorReply

/** What a connection's handler needs from the server it belongs to. */
interface Exposed {
  readonly device: Device
  readonly limits: Limits
  readonly config: Uint8Array
}

const refuse = (command: number, errnoValue: number): ErrorReply => ({ _tag: "ErrorReply", command, errno: errnoValue })

/** Answers a device failure with its errno; the failure is logged, not lost. */
const deviceFailed =
  (command: number) =>
  (error: DeviceError): Effect.Effect<Answer> =>
    Effect.logDebug(`vfio-user server: ${error.message}`).pipe(Effect.as(refuse(command, errnoOfDeviceError(error))))

/** A region access must lie inside the config-space region, the only one with content. */
const regionSlice = (config: Uint8Array, region: number, offset: bigint, count: number): number | undefined =>
  region === ConfigRegion && offset >= 0n && offset + BigInt(count) <= BigInt(config.length)
    ? Number(offset)
    : undefined

/**
 * SET MIG_DEVICE_STATE as the server walks it: the uAPI's combination transition from the
 * current state, one arc at a time through `Device.setState` (a single-arc request is a path
 * of one arc). A request the FSM refuses is EINVAL, as in the kernel.
 */
const walkTo = (device: Device, command: number, to: State): Effect.Effect<Answer> =>
  Effect.gen(function* () {
    const from = yield* device.getState
    const path = transitionPath(from, to, device.flags)
    if (Result.isFailure(path)) {
      yield* Effect.logDebug(`vfio-user server: ${path.failure.message}`)
      return refuse(command, EINVAL)
    }
    for (const next of path.success.slice(1)) yield* device.setState(next)
    return { _tag: "SetDeviceState", state: to, dataFd: NoDataFd } satisfies Answer
  }).pipe(Effect.catch(deviceFailed(command)))

/**
 * MIG_DATA_READ: fills the request from as many device reads as needed, so that a short
 * answer always means "no more data now" (the spec's reading) and 0 bytes ends the stream
 * (or, in pre-copy, means nothing for now). Data already taken from the device is never
 * dropped: a failure after some data answers what was read, and the next read reports it.
 */
const readData = (device: Device, command: number, size: number): Effect.Effect<Answer> =>
  Effect.gen(function* () {
    const parts: Array<Uint8Array> = []
    let total = 0
    while (total < size) {
      const result = yield* device.read(size - total).pipe(Effect.result)
      if (Result.isFailure(result)) {
        if (total === 0) return yield* deviceFailed(command)(result.failure)
        break
      }
      const chunk = result.success
      if (chunk._tag !== "Chunk" || chunk.data.length === 0) break
      if (chunk.data.length > size - total) {
        yield* Effect.logWarning(`vfio-user server: device ${device.id} returned more data than asked`)
        return refuse(command, EIO)
      }
      parts.push(chunk.data)
      total += chunk.data.length
    }
    const data = new Uint8Array(total)
    let at = 0
    for (const part of parts) {
      data.set(part, at)
      at += part.length
    }
    return { _tag: "MigDataRead", data } satisfies Answer
  })

const serverCapabilities = (limits: Limits): Capabilities => ({
  maxMsgFds: 0,
  maxDataXferSize: limits.maxDataXferSize,
  migration: { pgsize: PageSize }
})

/** Answers one decoded command. Never fails: every device error becomes an errno reply. */
const answer = (exposed: Exposed, command: number, request: Request): Effect.Effect<Answer> => {
  const { device, config } = exposed
  const failed = deviceFailed(command)
  switch (request._tag) {
    case "Version":
      return Effect.succeed({
        _tag: "Version",
        major: ProtocolVersion.major,
        minor: Math.min(request.minor, ProtocolVersion.minor),
        capabilities: serverCapabilities(exposed.limits)
      })
    case "DeviceGetInfo":
      return Effect.succeed({
        _tag: "DeviceGetInfo",
        argsz: 16,
        flags: DeviceInfoFlag.RESET | kindFlag[device.kind],
        numRegions: RegionCount,
        numIrqs: 0
      })
    case "GetRegionInfo":
      if (request.index >= RegionCount) return Effect.succeed(refuse(command, EINVAL))
      return Effect.succeed({
        _tag: "GetRegionInfo",
        argsz: RegionInfoSize,
        flags: request.index === ConfigRegion ? RegionInfoFlag.READ | RegionInfoFlag.WRITE : 0,
        index: request.index,
        capOffset: 0,
        size: request.index === ConfigRegion ? BigInt(config.length) : 0n,
        offset: 0n
      })
    case "RegionRead": {
      const at = regionSlice(config, request.region, request.offset, request.count)
      if (at === undefined) return Effect.succeed(refuse(command, EINVAL))
      return Effect.succeed({
        _tag: "RegionRead",
        offset: request.offset,
        region: request.region,
        data: config.slice(at, at + request.count)
      })
    }
    case "RegionWrite": {
      const at = regionSlice(config, request.region, request.offset, request.data.length)
      if (at === undefined) return Effect.succeed(refuse(command, EINVAL))
      config.set(request.data, at)
      return Effect.succeed({
        _tag: "RegionWrite",
        offset: request.offset,
        region: request.region,
        count: request.data.length
      })
    }
    case "DeviceReset":
      return device.reset.pipe(Effect.as<Answer>({ _tag: "DeviceReset" }), Effect.catch(failed))
    case "GetMigrationFlags":
      return Effect.succeed(
        hasFlag(device.flags, "STOP_COPY")
          ? { _tag: "GetMigrationFlags", flags: BigInt(device.flags & 7) }
          : refuse(command, EOPNOTSUPP)
      )
    case "GetDeviceState":
      return device.getState.pipe(
        Effect.map((state): Answer => ({ _tag: "GetDeviceState", state, dataFd: NoDataFd })),
        Effect.catch(failed)
      )
    case "SetDeviceState":
      return walkTo(device, command, request.state)
    case "GetStopCopySize":
      return device.stopCopyLength.pipe(
        Effect.map((length): Answer => ({ _tag: "GetStopCopySize", length: BigInt(length) })),
        Effect.catch(failed)
      )
    case "ProbeFeature": {
      const ops = probeable.get(request.feature)
      const supported = ops !== undefined && (!request.get || ops.get) && (!request.set || ops.set)
      return Effect.succeed(
        supported
          ? { _tag: "ProbeFeature", feature: request.feature, get: request.get, set: request.set }
          : refuse(command, EOPNOTSUPP)
      )
    }
    case "MigDataRead":
      return readData(device, command, request.size)
    case "MigDataWrite":
      return device.write(request.data).pipe(Effect.as<Answer>({ _tag: "MigDataWrite" }), Effect.catch(failed))
  }
}

/** The errno a server answers for a command it cannot decode (the framing being intact). */
const errnoOfProtocolError = (error: ProtocolError): number =>
  error._tag === "UnsupportedCommand" ? EOPNOTSUPP : EINVAL

/** What a connection has established so far. */
interface Session {
  negotiated: boolean
}

/** The answer to one command message, whether or not it decodes. */
const answerFrame = (exposed: Exposed, session: Session, frame: Frame): Effect.Effect<Answer> => {
  const command = frame.header.command
  const decoded = decodeRequest(frame, exposed.limits)
  if (Result.isFailure(decoded)) {
    return Effect.logDebug(`vfio-user server: ${decoded.failure.message}`).pipe(
      Effect.as(refuse(command, errnoOfProtocolError(decoded.failure)))
    )
  }
  const request = decoded.success
  // VERSION is the first message of a connection, and the only VERSION.
  if ((request._tag === "Version") === session.negotiated) return Effect.succeed(refuse(command, EINVAL))
  return answer(exposed, command, request).pipe(
    Effect.tap((reply) =>
      Effect.sync(() => {
        if (reply._tag === "Version") session.negotiated = true
      })
    )
  )
}

/**
 * The bytes that answer one message: a reply, nothing for a no-reply command, or `"close"`
 * for a message that is not a command (there is nothing to answer; the peer is confused).
 */
const respond = (exposed: Exposed, session: Session, frame: Frame): Effect.Effect<Uint8Array | "close" | undefined> => {
  const { header } = frame
  if ((header.flags & HeaderFlag.TYPE_MASK) !== HeaderFlag.TYPE_COMMAND) return Effect.succeed("close")
  return answerFrame(exposed, session, frame).pipe(
    Effect.catchDefect((defect) =>
      // A defect in the device must not take the server down: the client gets EIO, the log gets the defect.
      Effect.logError("vfio-user server: device defect", defect).pipe(Effect.as(refuse(header.command, EIO)))
    ),
    Effect.map((reply) => ((header.flags & HeaderFlag.NO_REPLY) !== 0 ? undefined : encodeReply(header.msgId, reply)))
  )
}

/** Waits until the socket's write buffer drains (or the socket closes). */
const drained = (socket: net.Socket): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const done = () => resume(Effect.void)
    socket.once("drain", done)
    socket.once("close", done)
    return Effect.sync(() => {
      socket.off("drain", done)
      socket.off("close", done)
    })
  })

/**
 * Serves one connection, answering its messages in order, until the client closes it, a
 * framing error ends it, or the server stops. Memory is bounded: reading pauses while
 * messages wait, and a reply that does not fit the socket buffer is waited for.
 */
const serveConnection = (exposed: Exposed, socket: net.Socket): Effect.Effect<void> =>
  Effect.gen(function* () {
    const inbox = yield* Queue.make<Frame, Cause.Done>()
    const gone = yield* Deferred.make<"close">()
    const session: Session = { negotiated: false }
    const decoder = new FrameDecoder(exposed.limits.maxFrameSize)
    let paused = false
    let broken: ProtocolError | undefined
    socket.on("data", (chunk: Buffer) => {
      const { frames, error } = decoder.push(chunk)
      for (const frame of frames) Queue.offerUnsafe(inbox, frame)
      if (error !== undefined) {
        broken = error
        socket.pause()
        Queue.endUnsafe(inbox)
      } else if (Queue.sizeUnsafe(inbox) >= InboxHighWater) {
        paused = true
        socket.pause()
      }
    })
    socket.on("end", () => {
      broken = broken ?? decoder.finish()
      Queue.endUnsafe(inbox)
    })
    socket.on("close", () => {
      Deferred.doneUnsafe(gone, Effect.succeed("close"))
      Queue.endUnsafe(inbox)
    })
    const step = Effect.gen(function* () {
      const frame = yield* Queue.take(inbox)
      if (paused && Queue.sizeUnsafe(inbox) < InboxHighWater / 2) {
        paused = false
        socket.resume()
      }
      // Nobody can read the reply once the socket is closed: a device call still running
      // (a hung arc) is interrupted, so that the next connection is not stuck behind it.
      const out = yield* respond(exposed, session, frame).pipe(Effect.raceFirst(Deferred.await(gone)))
      if (out === "close") return yield* Queue.end(inbox)
      if (out !== undefined && socket.writable && !socket.write(out)) yield* drained(socket)
    })
    yield* Effect.forever(step).pipe(Effect.catchTag("Done", () => Effect.void))
    if (broken !== undefined) yield* Effect.logWarning(`vfio-user server: connection closed: ${broken.message}`)
    socket.destroySoon()
  }).pipe(Effect.onInterrupt(() => Effect.sync(() => socket.destroy())))

const listen = (path: string, onConnection: (socket: net.Socket) => void): Effect.Effect<net.Server, ListenFailed> =>
  Effect.callback<net.Server, ListenFailed>((resume) => {
    const server = net.createServer(onConnection)
    const onError = (error: Error) => resume(Effect.fail(new ListenFailed({ path, reason: error.message })))
    server.once("error", onError)
    server.listen(path, () => {
      server.off("error", onError)
      resume(Effect.succeed(server))
    })
    return Effect.sync(() => server.close())
  })

/**
 * Exposes a `Device` as a vfio-user server on a UNIX socket, until the scope closes (which
 * closes the listener and every connection and removes the socket file).
 *
 * Connections are served one at a time, in the order they arrive; up to `backlog` wait.
 * Each answers VERSION (0.2, no file descriptors), DEVICE_GET_INFO (a PCI layout of 9
 * regions where only config space has content), GET_REGION_INFO, REGION_READ/WRITE on config
 * space, DEVICE_RESET, DEVICE_FEATURE (MIGRATION, MIG_DEVICE_STATE GET/SET, MIG_DATA_SIZE,
 * PROBE of those), MIG_DATA_READ/WRITE, by calling the device. A SET of the state walks the
 * kernel's combination transition one arc at a time, so any vfio-user client may ask for any
 * state. Device errors become errno replies; an undecodable command gets EINVAL (EOPNOTSUPP
 * for a command this package does not carry, such as DMA_MAP); a broken frame or a message
 * that is not a command closes the connection. Memory per connection is bounded.
 */
export const serve = Effect.fn("VfioUser.serve")(function* (
  options: ServerOptions
): Effect.fn.Return<VfioUserServer, ListenFailed, Scope.Scope> {
  const maxDataXferSize = options.maxDataXferSize ?? DefaultMaxDataXferSize
  if (!isCount(maxDataXferSize, 1)) {
    return yield* Effect.die(new RangeError(`maxDataXferSize must be a u32 above 0, got ${maxDataXferSize}`))
  }
  const limits = limitsFor(maxDataXferSize)
  const exposed: Exposed = {
    device: options.device,
    limits,
    config: options.configSpace === undefined ? new Uint8Array(256) : options.configSpace.slice()
  }
  const context = yield* Effect.context<never>()
  const log = (message: string) => Effect.runForkWith(context)(Effect.logWarning(`vfio-user server: ${message}`))
  const backlog = options.backlog ?? 8
  if (!isCount(backlog, 1)) return yield* Effect.die(new RangeError(`backlog must be a u32 above 0, got ${backlog}`))
  const waiting = yield* Queue.bounded<net.Socket>(backlog)
  const open = new Set<net.Socket>()
  const served = yield* Ref.make(0)

  const onConnection = (socket: net.Socket) => {
    open.add(socket)
    socket.on("error", (error: Error) => log(`connection error: ${error.message}`))
    socket.on("close", () => open.delete(socket))
    if (!Queue.offerUnsafe(waiting, socket)) {
      log("too many waiting connections; one refused")
      socket.destroy()
    }
  }

  const server = yield* Effect.acquireRelease(listen(options.path, onConnection), (server) =>
    Effect.gen(function* () {
      for (const socket of open) socket.destroy()
      yield* Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
      yield* Effect.try({
        try: () => rmSync(options.path, { force: true }),
        catch: (error) => error
      }).pipe(Effect.catch((error) => Effect.logWarning(`vfio-user server: cannot remove ${options.path}`, error)))
    })
  )
  server.on("error", (error: Error) => log(`listener error: ${error.message}`))

  yield* Effect.forkScoped(
    Effect.forever(
      Queue.take(waiting).pipe(
        Effect.tap(() => Ref.update(served, (n) => n + 1)),
        Effect.flatMap((socket) => (socket.destroyed ? Effect.void : serveConnection(exposed, socket)))
      )
    )
  )
  return { path: options.path, served: Ref.get(served) }
})
