import { rmSync } from "node:fs"
import * as net from "node:net"
import type { Device, DeviceError, DeviceKind } from "@lockstep/device"
import { hasFlag, type State, path as transitionPath } from "@lockstep/fsm"
import { type Cause, Data, Deferred, Effect, FiberSet, Queue, Ref, Result, type Scope } from "effect"
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
  IrqInfoSize,
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
   * (default: 256 zero bytes; `pciConfigSpace` builds a header with vendor and device ids).
   * The buffer is copied.
   */
  readonly configSpace?: Uint8Array
  /** Connections served at once, beyond which new ones are closed (default 8). */
  readonly maxConnections?: number
  /**
   * How long a message may stay half-received before its connection is dropped, in ms
   * (default 5000): a client that stalls mid-message must not hold a connection for ever.
   */
  readonly stallTimeoutMs?: number
  /**
   * Compatibility mode for clients built on libvfio-user, which insist that a MIG_DATA_READ
   * reply be as long as the size they asked for: every reply is padded with zero bytes to
   * `8 + size asked`, while its `argsz` and `size` still give the real count. Off by default:
   * the spec's reply carries only the data.
   */
  readonly padMigDataRead?: boolean
}

/** A running vfio-user server. */
export interface VfioUserServer {
  readonly path: string
  /** Connections taken up for serving so far. */
  readonly served: Effect.Effect<number>
}

/**
 * The regions of a vfio-pci device (`VFIO_PCI_NUM_REGIONS`): BARs 0-5, ROM, config space,
 * VGA. Only config space has content here; the other regions exist with size 0.
 */
const RegionCount = 9
const ConfigRegion = 7

/**
 * Interrupt indexes per device type (`VFIO_PCI_NUM_IRQS`, `VFIO_CCW_NUM_IRQS`,
 * `VFIO_AP_NUM_IRQS`). A served device has no interrupts: each index answers count 0, as the
 * kernel does for an unimplemented interrupt type.
 */
const irqIndexes: Record<DeviceKind, number> = { pci: 5, mdev: 5, ccw: 3, ap: 1 }

/** Page size announced for migration (`"migration":{"pgsize":4096}`). */
const PageSize = 4096

/** Messages buffered per connection before reading from the socket pauses. */
const InboxHighWater = 8

const errno = (code: string, fallback: number): number => errnoOfCode(code) ?? fallback
const EINVAL = errno("EINVAL", 22)
const EIO = errno("EIO", 5)
const EBUSY = errno("EBUSY", 16)
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

/**
 * Commands that change the device's migration: only the connection that owns the migration
 * may send them. The first connection to send one becomes the owner until it closes; the
 * others may still look (state, flags, sizes, regions) but get EBUSY for these.
 */
const owned: ReadonlySet<Request["_tag"]> = new Set(["SetDeviceState", "MigDataRead", "MigDataWrite", "DeviceReset"])

type Answer = Reply | ErrorReply

/** One connection, as the server knows it. */
interface Session {
  readonly id: number
  negotiated: boolean
}

/** What a connection's handler needs from the server it belongs to. */
interface Exposed {
  readonly device: Device
  readonly limits: Limits
  readonly config: Uint8Array
  readonly padMigDataRead: boolean
  readonly stallTimeoutMs: number
  /** The connection that owns the migration, if any. */
  owner: Session | undefined
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
 * With `pad`, the reply is padded to the size asked (see `ServerOptions.padMigDataRead`).
 */
const readData = (device: Device, command: number, size: number, pad: boolean): Effect.Effect<Answer> =>
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
    return { _tag: "MigDataRead", data, padding: pad ? size - total : 0 } satisfies Answer
  })

const serverCapabilities = (limits: Limits): Capabilities => ({
  maxMsgFds: 0,
  maxDataXferSize: limits.maxDataXferSize,
  migration: { pgsize: PageSize }
})

/** Answers the commands the server handles itself, without calling the device (config space included). */
const answerLocally = (exposed: Exposed, command: number, request: Request): Answer | undefined => {
  const { device, config } = exposed
  switch (request._tag) {
    case "Version":
      return {
        _tag: "Version",
        major: ProtocolVersion.major,
        minor: Math.min(request.minor, ProtocolVersion.minor),
        capabilities: serverCapabilities(exposed.limits)
      }
    case "DeviceGetInfo":
      return {
        _tag: "DeviceGetInfo",
        argsz: 16,
        flags: DeviceInfoFlag.RESET | kindFlag[device.kind],
        numRegions: RegionCount,
        numIrqs: irqIndexes[device.kind]
      }
    case "GetRegionInfo":
      if (request.index >= RegionCount) return refuse(command, EINVAL)
      return {
        _tag: "GetRegionInfo",
        argsz: RegionInfoSize,
        flags: request.index === ConfigRegion ? RegionInfoFlag.READ | RegionInfoFlag.WRITE : 0,
        index: request.index,
        capOffset: 0,
        size: request.index === ConfigRegion ? BigInt(config.length) : 0n,
        offset: 0n
      }
    case "GetIrqInfo":
      if (request.index >= irqIndexes[device.kind]) return refuse(command, EINVAL)
      return { _tag: "GetIrqInfo", argsz: IrqInfoSize, flags: 0, index: request.index, count: 0 }
    case "RegionRead": {
      const at = regionSlice(config, request.region, request.offset, request.count)
      if (at === undefined) return refuse(command, EINVAL)
      return {
        _tag: "RegionRead",
        offset: request.offset,
        region: request.region,
        data: config.slice(at, at + request.count)
      }
    }
    case "RegionWrite": {
      const at = regionSlice(config, request.region, request.offset, request.data.length)
      if (at === undefined) return refuse(command, EINVAL)
      config.set(request.data, at)
      return { _tag: "RegionWrite", offset: request.offset, region: request.region, count: request.data.length }
    }
    case "GetMigrationFlags":
      return hasFlag(device.flags, "STOP_COPY")
        ? { _tag: "GetMigrationFlags", flags: BigInt(device.flags & 7) }
        : refuse(command, EOPNOTSUPP)
    case "ProbeFeature": {
      const ops = probeable.get(request.feature)
      const supported = ops !== undefined && (!request.get || ops.get) && (!request.set || ops.set)
      // The spec: a probe's reply payload is its request's (argsz and data area echoed).
      return supported ? request : refuse(command, EOPNOTSUPP)
    }
    default:
      return undefined
  }
}

/** Answers one decoded command. Never fails: every device error becomes an errno reply. */
const answer = (exposed: Exposed, command: number, request: Request): Effect.Effect<Answer> => {
  const local = answerLocally(exposed, command, request)
  if (local !== undefined) return Effect.succeed(local)
  const { device } = exposed
  const failed = deviceFailed(command)
  switch (request._tag) {
    case "DeviceReset":
      return device.reset.pipe(Effect.as<Answer>({ _tag: "DeviceReset" }), Effect.catch(failed))
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
    case "MigDataRead":
      return readData(device, command, request.size, exposed.padMigDataRead)
    case "MigDataWrite":
      return device.write(request.data).pipe(Effect.as<Answer>({ _tag: "MigDataWrite" }), Effect.catch(failed))
    default:
      return Effect.succeed(refuse(command, EOPNOTSUPP))
  }
}

/** The errno a server answers for a command it cannot decode (the framing being intact). */
const errnoOfProtocolError = (error: ProtocolError): number =>
  error.reason._tag === "UnsupportedCommand" ? EOPNOTSUPP : EINVAL

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
  if (owned.has(request._tag)) {
    if (exposed.owner !== undefined && exposed.owner !== session) {
      return Effect.logDebug(
        `vfio-user server: connection ${session.id} refused ${request._tag}: connection ${exposed.owner.id} owns the migration`
      ).pipe(Effect.as(refuse(command, EBUSY)))
    }
    exposed.owner = session
  }
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
 * Drops a connection whose message stays half-received for `timeoutMs`. Time spent with reading
 * paused (the server is behind, not the client) does not count.
 */
class StallWatch {
  private timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(
    private readonly timeoutMs: number,
    private readonly onStall: () => void
  ) {}

  /** After bytes arrived or reading resumed: `partial` bytes of a message are waiting for the rest. */
  update(partial: number): void {
    if (partial === 0) this.stop()
    else if (this.timer === undefined) {
      this.timer = setTimeout(this.onStall, this.timeoutMs)
      this.timer.unref()
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
  }
}

/**
 * Serves one connection, answering its messages in order, until the client closes it, a
 * framing error or a stalled message ends it, or the server stops. Memory is bounded: reading
 * pauses while messages wait, and a reply that does not fit the socket buffer is waited for.
 */
const serveConnection = (exposed: Exposed, socket: net.Socket, session: Session): Effect.Effect<void> =>
  Effect.gen(function* () {
    const inbox = yield* Queue.make<Frame, Cause.Done>()
    const gone = yield* Deferred.make<"close">()
    const decoder = new FrameDecoder(exposed.limits.maxFrameSize)
    let paused = false
    let broken: ProtocolError | undefined
    let stalled = false
    const stall = new StallWatch(exposed.stallTimeoutMs, () => {
      stalled = true
      socket.destroy()
    })
    socket.on("data", (chunk: Buffer) => {
      const { frames, error } = decoder.push(chunk)
      for (const frame of frames) Queue.offerUnsafe(inbox, frame)
      if (error !== undefined) {
        broken = error
        stall.stop()
        socket.pause()
        Queue.endUnsafe(inbox)
      } else if (Queue.sizeUnsafe(inbox) >= InboxHighWater) {
        paused = true
        stall.stop()
        socket.pause()
      } else stall.update(decoder.buffered)
    })
    socket.on("end", () => {
      broken = broken ?? decoder.finish()
      Queue.endUnsafe(inbox)
    })
    socket.on("close", () => {
      stall.stop()
      Deferred.doneUnsafe(gone, Effect.succeed("close"))
      Queue.endUnsafe(inbox)
    })
    const step = Effect.gen(function* () {
      const frame = yield* Queue.take(inbox)
      if (paused && Queue.sizeUnsafe(inbox) < InboxHighWater / 2) {
        paused = false
        stall.update(decoder.buffered)
        socket.resume()
      }
      // Nobody can read the reply once the socket is closed: a device call still running
      // (a hung arc) is interrupted, so that the device is free for the next owner.
      const out = yield* respond(exposed, session, frame).pipe(Effect.raceFirst(Deferred.await(gone)))
      if (out === "close") return yield* Queue.end(inbox)
      if (out !== undefined && socket.writable && !socket.write(out)) yield* drained(socket)
    })
    yield* Effect.forever(step).pipe(Effect.catchTag("Done", () => Effect.void))
    if (broken !== undefined) yield* Effect.logWarning(`vfio-user server: connection closed: ${broken.message}`)
    if (stalled)
      yield* Effect.logWarning(
        `vfio-user server: connection ${session.id} dropped: a message stayed incomplete for ${exposed.stallTimeoutMs} ms`
      )
    socket.destroySoon()
  }).pipe(
    Effect.ensuring(
      Effect.sync(() => {
        if (exposed.owner === session) exposed.owner = undefined
      })
    ),
    Effect.onInterrupt(() => Effect.sync(() => socket.destroy()))
  )

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

const positiveCount = (name: string, value: number): Effect.Effect<number> =>
  isCount(value, 1) ? Effect.succeed(value) : Effect.die(new RangeError(`${name} must be a u32 above 0, got ${value}`))

/**
 * Exposes a `Device` as a vfio-user server on a UNIX socket, until the scope closes (which
 * closes the listener and every connection and removes the socket file).
 *
 * Connections are served concurrently (up to `maxConnections`), each answering its messages
 * in order: VERSION (0.2, no file descriptors), DEVICE_GET_INFO (a PCI layout of 9 regions
 * where only config space has content; the kind's interrupt indexes, each with count 0),
 * GET_REGION_INFO, GET_IRQ_INFO, REGION_READ/WRITE on config space, DEVICE_RESET,
 * DEVICE_FEATURE (MIGRATION, MIG_DEVICE_STATE GET/SET, MIG_DATA_SIZE, PROBE of those),
 * MIG_DATA_READ/WRITE, by calling the device. One connection at a time owns the migration:
 * the first to send SET MIG_DEVICE_STATE, MIG_DATA_READ/WRITE or DEVICE_RESET, until it
 * closes; the others get EBUSY for those. A SET of the state walks the kernel's combination
 * transition one arc at a time, so any vfio-user client may ask for any state. Device errors
 * become errno replies; an undecodable command gets EINVAL (EOPNOTSUPP for a command this
 * package does not carry, such as DMA_MAP); a broken frame, a message that is not a command,
 * or a message left half-sent for `stallTimeoutMs` closes the connection. Memory per
 * connection is bounded.
 */
export const serve = Effect.fn("VfioUser.serve")(function* (
  options: ServerOptions
): Effect.fn.Return<VfioUserServer, ListenFailed, Scope.Scope> {
  const maxDataXferSize = yield* positiveCount("maxDataXferSize", options.maxDataXferSize ?? DefaultMaxDataXferSize)
  const maxConnections = yield* positiveCount("maxConnections", options.maxConnections ?? 8)
  const stallTimeoutMs = yield* positiveCount("stallTimeoutMs", options.stallTimeoutMs ?? 5000)
  const exposed: Exposed = {
    device: options.device,
    limits: limitsFor(maxDataXferSize),
    config: options.configSpace === undefined ? new Uint8Array(256) : options.configSpace.slice(),
    padMigDataRead: options.padMigDataRead ?? false,
    stallTimeoutMs,
    owner: undefined
  }
  const context = yield* Effect.context<never>()
  const run = Effect.runForkWith(context)
  const log = (message: string) => run(Effect.logWarning(`vfio-user server: ${message}`))
  const open = new Set<net.Socket>()
  const served = yield* Ref.make(0)
  const connections = yield* FiberSet.make<void>()
  const fork = yield* FiberSet.runtime(connections)<never>()
  let nextId = 0

  const onConnection = (socket: net.Socket) => {
    socket.on("error", (error: Error) => log(`connection error: ${error.message}`))
    if (open.size >= maxConnections) {
      log(`${maxConnections} connections are being served; one more refused`)
      socket.destroy()
      return
    }
    open.add(socket)
    socket.on("close", () => open.delete(socket))
    const session: Session = { id: ++nextId, negotiated: false }
    fork(Ref.update(served, (n) => n + 1).pipe(Effect.andThen(serveConnection(exposed, socket, session))))
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
  return { path: options.path, served: Ref.get(served) }
})
