import * as net from "node:net"
import * as tls from "node:tls"
import { Duration, Effect, Option, type Scope } from "effect"
import { codeOf, isTlsFailure, sinkOf, sourceOf, transportErrorOf } from "./NodeChannel.js"
import { type RecycledReads, recycledReads } from "./RecycledReads.js"
import type { Transport } from "./Transport.js"
import { TransportError } from "./TransportError.js"
import { Waiters } from "./Waiters.js"

/**
 * Mutual TLS: this side's certificate and key, and the CA its peer's certificate must chain
 * to. Both sides present certificates; a peer without a valid one is refused during the
 * handshake, before any frame is exchanged.
 */
export interface TlsOptions {
  /** PEM trust anchor(s) for the peer's certificate. */
  readonly ca: string | Buffer
  /** PEM certificate chain of this side. */
  readonly cert: string | Buffer
  /** PEM private key of this side. */
  readonly key: string | Buffer
  /** Client only: the name the server's certificate must carry. Default: `host`. */
  readonly servername?: string
}

/** Settings of a listening endpoint. */
export interface ListenOptions {
  /** Address to bind. Default `127.0.0.1`. */
  readonly host?: string
  /** Port to bind; 0 (the default) picks a free one (see `Listener.port`). */
  readonly port?: number
  /** Require mutual TLS. */
  readonly tls?: TlsOptions
  /** Received bytes held per connection before the socket is paused. Default 4 MiB. */
  readonly readAheadBytes?: number
}

/** Settings of an outgoing connection. */
export interface ConnectOptions {
  readonly host: string
  readonly port: number
  /** Require mutual TLS. */
  readonly tls?: TlsOptions
  /** Longest wait for the connection (and TLS handshake). Default: no limit. */
  readonly timeout?: Duration.Input
  /** Received bytes held before the socket is paused. Default 4 MiB. */
  readonly readAheadBytes?: number
  /**
   * Plain TCP only (ignored with `tls`): read into a ring of recycled buffers of about
   * `readAheadBytes` instead of a fresh buffer per socket read, which spares the receiver most
   * of its garbage collection (issue 17). The transport then lends what it reads (`lends`): the
   * bytes `read` answers stay valid only until the next `read`. `FrameReader` handles that; a
   * caller reading the transport itself copies what it keeps. Only a dialled socket can read
   * this way (Node has no such option for the sockets a server accepts). Default false.
   */
  readonly recycledReads?: boolean
}

/** A bound TCP endpoint accepting connections. */
export interface Listener {
  /** The bound address. */
  readonly host: string
  /** The bound port. */
  readonly port: number
  /**
   * The next connection, closed with the calling scope. With TLS, a client refused during its
   * handshake fails this with `TlsRefused` (accept again to wait for the next one).
   */
  readonly accept: Effect.Effect<Transport, TransportError, Scope.Scope>
}

/**
 * Sixteen 256 KiB frames. A smaller mark pauses the socket every few reads while a frame is
 * decoded, and each pause lets the kernel's receive window close on the sender (at 256 KiB the
 * framed stream ran 0.59–0.62 of a raw socket, at 4 MiB 0.66–0.94; issue 17).
 */
const defaultReadAhead = 4 * 1024 * 1024

/** Connections accepted by the server and not yet taken, beyond which new ones are dropped. */
const acceptBacklog = 16

/**
 * The byte a mutual-TLS server sends first, once it has verified the client's certificate.
 * Node's TLS server refuses an unauthorized client by closing the connection without a TLS
 * alert, and with TLS 1.3 the client has already finished its handshake by then; waiting for
 * this byte is how `connect` learns, before any frame, that it was accepted.
 */
export const TlsAuthorized = 0x06

/** Binds a TCP (or mutual-TLS) listener, closed with the scope. */
export const listen = Effect.fn("TcpTransport.listen")(function* (options: ListenOptions = {}) {
  const host = options.host ?? "127.0.0.1"
  const readAhead = options.readAheadBytes ?? defaultReadAhead
  // Sockets become transports as they arrive, so their errors are handled before anyone accepts them.
  const pending: Array<Connection | TransportError> = []
  const waiters = new Waiters()
  const enqueue = (item: Connection | TransportError) => {
    if (pending.length >= acceptBacklog) {
      if (!(item instanceof Error)) item.destroy()
      return
    }
    pending.push(item)
    waiters.wakeAll()
  }
  const server = options.tls === undefined ? net.createServer({ allowHalfOpen: true }) : tlsServer(options.tls)
  if (server instanceof tls.Server) {
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      if (!socket.authorized) {
        const certificate = socket.getPeerCertificate()
        socket.destroy()
        enqueue(
          Object.keys(certificate).length === 0
            ? TransportError.tlsRefused({
                operation: "accept",
                code: "PEER_DID_NOT_RETURN_A_CERTIFICATE",
                reason: "the client presented no certificate"
              })
            : TransportError.tlsRefused({
                operation: "accept",
                code: String(socket.authorizationError ?? "UNAUTHORIZED"),
                reason: `the client's certificate (subject CN=${certificate.subject?.CN ?? "?"}) was not accepted`
              })
        )
        return
      }
      const accepted = connection(socket, readAhead)
      socket.write(new Uint8Array([TlsAuthorized]))
      enqueue(accepted)
    })
    server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
      const from = socket.remoteAddress === undefined ? "" : `${socket.remoteAddress}:${socket.remotePort ?? "?"}: `
      socket.destroy()
      enqueue(
        TransportError.tlsRefused({
          operation: "accept",
          code: codeOf(error),
          reason: `${from}${clientErrorReason(error)}`
        })
      )
    })
  } else {
    server.on("connection", (socket: net.Socket) => enqueue(connection(socket, readAhead)))
  }
  const port = yield* Effect.acquireRelease(
    Effect.callback<number, TransportError>((resume) => {
      const onError = (error: Error) =>
        resume(
          Effect.fail(
            TransportError.transportFailed({ operation: "listen", code: codeOf(error), reason: error.message })
          )
        )
      server.once("error", onError)
      server.listen(options.port ?? 0, host, () => {
        server.off("error", onError)
        server.on("error", (error) => enqueue(transportErrorOf("accept", error, { local: false })))
        const address = server.address()
        resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
      })
    }),
    () =>
      Effect.sync(() => {
        for (const item of pending.splice(0)) if (!(item instanceof Error)) item.destroy()
        server.close()
        waiters.wakeAll()
      })
  )
  const take: Effect.Effect<Transport, TransportError> = Effect.suspend(() => {
    const item = pending.shift()
    if (item !== undefined) return item instanceof Error ? Effect.fail(item) : Effect.succeed(item.transport)
    if (!server.listening) {
      return Effect.fail(
        TransportError.transportClosed({ operation: "accept", by: "local", reason: "the listener is closed" })
      )
    }
    return Effect.andThen(
      waiters.until(() => pending.length > 0 || !server.listening),
      take
    )
  })
  const listener: Listener = {
    host,
    port,
    accept: Effect.acquireRelease(take, (transport) => transport.close, { interruptible: true })
  }
  return listener
})

/** Connects to a listener, closed with the scope. */
export const connect = (options: ConnectOptions): Effect.Effect<Transport, TransportError, Scope.Scope> => {
  const address = `${options.host}:${options.port}`
  const readAhead = options.readAheadBytes ?? defaultReadAhead
  const tlsOptions = options.tls
  const connecting = Effect.callback<Transport, TransportError>((resume) => {
    const ring = tlsOptions === undefined && options.recycledReads === true ? recycledReads(readAhead) : undefined
    const socket =
      tlsOptions === undefined
        ? net.connect({
            host: options.host,
            port: options.port,
            allowHalfOpen: true,
            ...(ring === undefined ? {} : { onread: ring.onread })
          })
        : tls.connect(clientTls(options.host, options.port, tlsOptions))
    let tcpConnected = false
    const onError = (error: Error) => {
      socket.destroy()
      const code = codeOf(error)
      if (tlsOptions !== undefined && (tcpConnected || isTlsFailure(error))) {
        resume(Effect.fail(TransportError.tlsRefused({ operation: "connect", code, reason: error.message })))
      } else {
        resume(Effect.fail(TransportError.connectFailed({ address, code, reason: error.message })))
      }
    }
    socket.once("error", onError)
    socket.once("connect", () => {
      tcpConnected = true
    })
    socket.once(tlsOptions === undefined ? "connect" : "secureConnect", () => {
      socket.off("error", onError)
      resume(Effect.succeed(connection(socket, readAhead, ring).transport))
    })
    return Effect.sync(() => {
      socket.destroy()
    })
  })
  const acquired = Effect.acquireRelease(connecting, (transport) => transport.close, { interruptible: true })
  const established = tlsOptions === undefined ? acquired : Effect.flatMap(acquired, authorized)
  return options.timeout === undefined
    ? established
    : Effect.timeoutOrElse(established, {
        duration: options.timeout,
        orElse: () =>
          Effect.fail(
            TransportError.transportTimeout({ operation: "connect", millis: Duration.toMillis(options.timeout ?? 0) })
          )
      })
}

/** Waits for the server's `TlsAuthorized` byte; anything else means it refused this client. */
const authorized = (transport: Transport): Effect.Effect<Transport, TransportError> => {
  const refused = (code: string, reason: string) => TransportError.tlsRefused({ operation: "connect", code, reason })
  return transport.read.pipe(
    Effect.mapError((error) => (error.reason._tag === "TlsRefused" ? error : refused("PEER_REFUSED", error.message))),
    Effect.flatMap((first) => {
      if (Option.isNone(first)) {
        return Effect.fail(
          refused("PEER_REFUSED", "the server closed the connection: it did not accept this certificate")
        )
      }
      if (first.value[0] !== TlsAuthorized) {
        return Effect.fail(refused("NOT_AUTHORIZED", "the server did not confirm the handshake"))
      }
      let rest: Uint8Array | undefined = first.value.length > 1 ? first.value.subarray(1) : undefined
      const read: Transport["read"] = Effect.suspend(() => {
        if (rest === undefined) return transport.read
        const bytes = rest
        rest = undefined
        return Effect.succeed(Option.some(bytes))
      })
      return Effect.succeed({ ...transport, read })
    })
  )
}

/** Codes OpenSSL gives when what arrived is not a TLS record: a client that speaks plain TCP. */
const plainClientCodes = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_HTTPS_PROXY_REQUEST",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_RECORD_LENGTH_MISMATCH"
])

/** Why a client failed its TLS handshake, as a sentence (OpenSSL's own text is for logs of OpenSSL). */
const clientErrorReason = (error: Error): string => {
  const code = codeOf(error)
  if (code === "ERR_SSL_HTTP_REQUEST") return "the client sent a plain HTTP request: this listener requires TLS"
  if (plainClientCodes.has(code))
    return "the client did not speak TLS (plain bytes arrived): this listener requires TLS"
  if (code === "ECONNRESET") return "the client hung up before completing the TLS handshake"
  const openssl = /:SSL routines:[^:]*:([^:]+):/.exec(error.message)
  return `the TLS handshake failed: ${openssl?.[1] ?? error.message}`
}

/** `tls.connect` honours `allowHalfOpen` (it passes it to the `TLSSocket`); its typings omit it. */
const clientTls = (host: string, port: number, options: TlsOptions): tls.ConnectionOptions => {
  const connection: tls.ConnectionOptions & { readonly allowHalfOpen: boolean } = {
    host,
    port,
    allowHalfOpen: true,
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    // SNI carries host names only (RFC 6066; Node warns with DEP0123 on an IP address). Without
    // it the certificate is still checked against `host`, an IP address among its names.
    ...(options.servername !== undefined
      ? { servername: options.servername }
      : net.isIP(host) === 0
        ? { servername: host }
        : {}),
    rejectUnauthorized: true
  }
  return connection
}

const tlsServer = (options: TlsOptions): tls.Server =>
  tls.createServer({
    allowHalfOpen: true,
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    // Verified on 'secureConnection' (see `TlsAuthorized`), so the refusal can be reported.
    requestCert: true,
    rejectUnauthorized: false
  })

/** A connected socket, as a transport and as the means to drop it. */
interface Connection {
  readonly transport: Transport
  readonly destroy: () => void
}

/**
 * Adapts a socket at once, so its errors are handled from the moment it is connected; `ring`
 * when the socket was built to read into it.
 */
const connection = (socket: net.Socket, readAheadBytes: number, ring?: RecycledReads): Connection => {
  socket.setNoDelay(true)
  const teardown = { local: false }
  const source = ring === undefined ? sourceOf(socket, teardown, readAheadBytes) : ring.attach(socket, teardown)
  const sink = sinkOf(socket, teardown)
  const destroy = () => {
    teardown.local = true
    socket.destroy()
  }
  const transport: Transport = {
    peer: `${socket.remoteAddress ?? "?"}:${socket.remotePort ?? "?"}`,
    read: source.read,
    ...(source.lends === true ? { lends: true } : {}),
    write: sink.write,
    end: sink.end,
    close: Effect.sync(destroy)
  }
  return { transport, destroy }
}
