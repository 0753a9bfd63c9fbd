import { Data } from "effect"

/** What a transport was doing when it failed. */
export type TransportOperation = "connect" | "listen" | "accept" | "read" | "write" | "end" | "open"

/**
 * The channel is closed: by the peer (reset, hung up mid-stream) or locally (used after `close`
 * or `end`). Bytes written but not yet read by the peer may be lost.
 */
export class TransportClosed extends Data.TaggedError("TransportClosed")<{
  readonly operation: TransportOperation
  readonly by: "peer" | "local"
  readonly reason: string
}> {
  override get message(): string {
    return `${this.operation}: channel closed by ${this.by === "peer" ? "the peer" : "this side"}: ${this.reason}`
  }
}

/** An operation did not complete within its time limit. */
export class TransportTimeout extends Data.TaggedError("TransportTimeout")<{
  readonly operation: TransportOperation
  readonly millis: number
}> {
  override get message(): string {
    return `${this.operation} timed out after ${this.millis} ms`
  }
}

/** The TLS handshake failed: a peer without a valid certificate, or one this side does not trust. */
export class TlsRefused extends Data.TaggedError("TlsRefused")<{
  readonly operation: TransportOperation
  /** The OpenSSL or Node error code, e.g. `ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE`. */
  readonly code: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.operation}: TLS refused (${this.code}): ${this.reason}`
  }
}

/** The peer could not be reached: connection refused, no route, unknown host. */
export class ConnectFailed extends Data.TaggedError("ConnectFailed")<{
  readonly address: string
  readonly code: string
  readonly reason: string
}> {
  override get message(): string {
    return `connect to ${this.address} failed (${this.code}): ${this.reason}`
  }
}

/** Any other I/O failure (a file that cannot be opened, a port already in use, …). */
export class TransportFailed extends Data.TaggedError("TransportFailed")<{
  readonly operation: TransportOperation
  readonly code: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.operation} failed (${this.code}): ${this.reason}`
  }
}

/** Every failure a transport reports. */
export type TransportError = TransportClosed | TransportTimeout | TlsRefused | ConnectFailed | TransportFailed
