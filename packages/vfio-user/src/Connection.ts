import * as net from "node:net"
import { Data, Duration, Effect, Result, type Scope, Semaphore } from "effect"
import { decodeReply, encodeRequest, FrameDecoder, type Limits, matchReply } from "./Codec.js"
import { codeOfErrno } from "./Errno.js"
import {
  commandLabel,
  type ErrorReply,
  expectationOf,
  type Frame,
  type ReplyOf,
  type Request,
  requestLabel
} from "./Message.js"
import { ProtocolError } from "./ProtocolError.js"

/** The socket could not be connected (no such path, refused, or no answer in time). */
export class VfioUserConnectFailed extends Data.TaggedError("VfioUserConnectFailed")<{
  readonly path: string
  readonly reason: string
}> {
  override get message(): string {
    return `cannot connect to vfio-user socket ${this.path}: ${this.reason}`
  }
}

/**
 * The connection is gone: the server closed it, the socket failed, or it was closed after a
 * protocol error. Every later request fails with the same error. `command` is the request
 * that was in flight (or last sent) and `expected` what it was for.
 */
export class ConnectionLost extends Data.TaggedError("ConnectionLost")<{
  readonly path: string
  readonly command: string
  readonly expected: string
  readonly reason: string
}> {
  override get message(): string {
    return `vfio-user connection ${this.path} lost during ${this.command} (expected ${this.expected}): ${this.reason}`
  }
}

/** The server did not answer a request in time. The request is abandoned; its late reply is dropped. */
export class ReplyTimeout extends Data.TaggedError("ReplyTimeout")<{
  /** The server's socket. */
  readonly path: string
  readonly command: string
  readonly msgId: number
  readonly timeoutMillis: number
  /** What the request was for. */
  readonly expected: string
}> {
  override get message(): string {
    return `vfio-user server ${this.path} did not answer ${this.command} (msg_id ${this.msgId}) within ${this.timeoutMillis} ms; expected ${this.expected}`
  }
}

/** The server answered a request with an error reply. */
export class ServerError extends Data.TaggedError("ServerError")<{
  /** The server's socket. */
  readonly path: string
  readonly command: string
  readonly msgId: number
  readonly errno: number
  /** The errno's name (`EINVAL`), or `ERRNO_<n>` if unknown. */
  readonly code: string
  /** What the request was for. */
  readonly expected: string
}> {
  override get message(): string {
    return `vfio-user server ${this.path} refused ${this.command} (msg_id ${this.msgId}) with ${this.code}; expected ${this.expected}`
  }
}

/** Every way one request over a connection can fail. */
export type RequestError = ServerError | ReplyTimeout | ConnectionLost | ProtocolError

/**
 * A request error as a sentence that names the server: timeouts, refusals and lost connections
 * name it already; a protocol error names only the message, so the socket is put in front.
 */
export const describeRequestError = (socket: string, error: RequestError | VfioUserConnectFailed): string =>
  error._tag === "ServerError" ||
  error._tag === "ReplyTimeout" ||
  error._tag === "ConnectionLost" ||
  error._tag === "VfioUserConnectFailed"
    ? error.message
    : `vfio-user server ${socket}: ${error.message}`

/** A request/reply channel to a vfio-user server. */
export interface Connection {
  /** Sends one request and waits for its reply. */
  readonly call: <R extends Request>(request: R) => Effect.Effect<ReplyOf<R["_tag"]>, RequestError>
}

const isErrorReply = (reply: { readonly _tag: string }): reply is ErrorReply => reply._tag === "ErrorReply"

/** Replies to abandoned requests still awaited before the connection is given up as unusable. */
const MaxAbandoned = 64

interface Waiter {
  readonly msgId: number
  readonly resume: (effect: Effect.Effect<Frame, ProtocolError | ConnectionLost>) => void
}

/**
 * The mutable side of a connection, driven by socket events. Requests are serialized by the
 * caller (one outstanding at a time), so at most one waiter exists; any other message that
 * arrives is either the late reply of an abandoned request (dropped) or a protocol violation
 * (the connection is closed).
 */
class Wire {
  private readonly decoder: FrameDecoder
  private waiter: Waiter | undefined = undefined
  private lost: ConnectionLost | undefined = undefined
  private readonly abandoned = new Set<number>()
  private nextId = 0
  private current = { command: "connect", expected: "a connection" }

  constructor(
    readonly path: string,
    readonly socket: net.Socket,
    limits: Limits
  ) {
    this.decoder = new FrameDecoder(limits.maxFrameSize)
    socket.on("data", (chunk: Buffer) => this.onData(chunk))
    socket.on("error", (error: Error) => this.fail(this.lostWith(error.message)))
    socket.on("close", () => this.fail(this.decoder.finish() ?? this.lostWith("the server closed the connection")))
  }

  get failure(): ConnectionLost | undefined {
    return this.lost
  }

  lostWith(reason: string): ConnectionLost {
    return new ConnectionLost({ path: this.path, ...this.current, reason })
  }

  /** Ends the connection for good and fails the waiting request, if any, with `error`. */
  fail(error: ProtocolError | ConnectionLost): void {
    if (this.lost === undefined) {
      this.lost =
        error._tag === "ConnectionLost" ? error : this.lostWith(`closed after a protocol error: ${error.message}`)
    }
    this.socket.destroy()
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.resume(Effect.fail(error))
  }

  private onData(chunk: Uint8Array): void {
    const { frames, error } = this.decoder.push(chunk)
    for (const frame of frames) this.deliver(frame)
    if (error !== undefined) this.fail(error)
  }

  private deliver(frame: Frame): void {
    if (this.lost !== undefined) return
    const id = frame.header.msgId
    const waiter = this.waiter
    if (waiter?.msgId !== id && this.abandoned.delete(id)) return
    if (waiter === undefined) {
      this.fail(
        ProtocolError.replyMismatch({
          command: commandLabel(frame.header.command),
          msgId: id,
          field: "msg_id",
          value: id,
          expected: "no message while no request is outstanding"
        })
      )
      return
    }
    this.waiter = undefined
    waiter.resume(Effect.succeed(frame))
  }

  /** A fresh msg_id, skipping those whose late replies are still expected. */
  allocateId(): number {
    let id = this.nextId
    while (this.abandoned.has(id)) id = (id + 1) & 0xffff
    this.nextId = (id + 1) & 0xffff
    return id
  }

  /** Sends one message in one socket write and waits for the message that answers it. */
  exchange(
    msgId: number,
    current: { readonly command: string; readonly expected: string },
    bytes: Uint8Array
  ): Effect.Effect<Frame, ProtocolError | ConnectionLost> {
    return Effect.callback<Frame, ProtocolError | ConnectionLost>((resume) => {
      this.current = current
      if (this.lost !== undefined) {
        resume(Effect.fail(this.lost))
        return
      }
      this.waiter = { msgId, resume }
      this.socket.write(bytes)
      return Effect.sync(() => this.abandon(msgId))
    })
  }

  /** The request `msgId` will not be waited for any more (interrupted or timed out). */
  private abandon(msgId: number): void {
    if (this.waiter?.msgId !== msgId) return
    this.waiter = undefined
    this.abandoned.add(msgId)
    if (this.abandoned.size > MaxAbandoned) this.fail(this.lostWith(`${MaxAbandoned} requests went unanswered`))
  }
}

/** Options of {@link openConnection}. */
export interface ConnectionOptions {
  readonly path: string
  readonly limits: Limits
  /** How long to wait for the socket to connect and for each reply. */
  readonly timeout: Duration.Input
}

const connectSocket = (
  path: string,
  limits: Limits,
  timeoutMillis: number
): Effect.Effect<Wire, VfioUserConnectFailed> =>
  Effect.callback<Wire, VfioUserConnectFailed>((resume) => {
    const socket = net.createConnection({ path })
    const onError = (error: Error) => resume(Effect.fail(new VfioUserConnectFailed({ path, reason: error.message })))
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.off("error", onError)
      // The wire installs its listeners in this same tick, so no socket event goes unheard.
      resume(Effect.succeed(new Wire(path, socket, limits)))
    })
    return Effect.sync(() => socket.destroy())
  }).pipe(
    Effect.timeoutOrElse({
      duration: Duration.millis(timeoutMillis),
      orElse: () => Effect.fail(new VfioUserConnectFailed({ path, reason: `no connection within ${timeoutMillis} ms` }))
    })
  )

/**
 * Connects to a vfio-user server. One request is outstanding at a time: `call` waits for the
 * previous reply before sending. A reply that does not arrive within the timeout fails with
 * `ReplyTimeout`; any protocol violation closes the connection. Closing the scope closes the socket.
 */
export const openConnection = (
  options: ConnectionOptions
): Effect.Effect<Connection, VfioUserConnectFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const timeoutMillis = Duration.toMillis(options.timeout)
    const wire = yield* Effect.acquireRelease(connectSocket(options.path, options.limits, timeoutMillis), (w) =>
      Effect.sync(() => w.fail(w.lostWith("the client closed the connection")))
    )
    const permit = yield* Semaphore.make(1)
    const call = <R extends Request>(request: R): Effect.Effect<ReplyOf<R["_tag"]>, RequestError> =>
      Effect.suspend(() => {
        const lost = wire.failure
        if (lost !== undefined) return Effect.fail(lost)
        const msgId = wire.allocateId()
        const command = requestLabel(request)
        const expected = expectationOf(request)
        const path = options.path
        return wire.exchange(msgId, { command, expected }, encodeRequest(msgId, request)).pipe(
          Effect.timeoutOrElse({
            duration: Duration.millis(timeoutMillis),
            orElse: () => Effect.fail(new ReplyTimeout({ path, command, msgId, timeoutMillis, expected }))
          }),
          Effect.flatMap((frame): Effect.Effect<ReplyOf<R["_tag"]>, RequestError> => {
            const decoded = Result.flatMap(decodeReply(frame, options.limits), (reply) =>
              matchReply(request, msgId, frame.header, reply)
            )
            if (Result.isFailure(decoded)) {
              wire.fail(decoded.failure)
              return Effect.fail(decoded.failure)
            }
            const reply = decoded.success
            return isErrorReply(reply)
              ? Effect.fail(
                  new ServerError({
                    path,
                    command,
                    msgId,
                    errno: reply.errno,
                    code: codeOfErrno(reply.errno),
                    expected
                  })
                )
              : Effect.succeed(reply)
          })
        )
      }).pipe(permit.withPermits(1))
    return { call }
  })
