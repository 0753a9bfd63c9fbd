import { Schema } from "effect"

/** What a transport was doing when it failed. */
export const TransportOperationSchema = Schema.Literals(["connect", "listen", "accept", "read", "write", "end", "open"])

/** What a transport was doing when it failed. */
export type TransportOperation = typeof TransportOperationSchema.Type

/**
 * The channel is closed: by the peer (reset, hung up mid-stream) or locally (used after `close`
 * or `end`). Bytes written but not yet read by the peer may be lost.
 */
export class TransportClosed extends Schema.TaggedError<TransportClosed>()("TransportClosed", {
  operation: TransportOperationSchema,
  by: Schema.Literals(["peer", "local"]),
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.operation}: channel closed by ${this.by === "peer" ? "the peer" : "this side"}: ${this.reason}`
  }
}

/** An operation did not complete within its time limit. */
export class TransportTimeout extends Schema.TaggedError<TransportTimeout>()("TransportTimeout", {
  operation: TransportOperationSchema,
  millis: Schema.Number
}) {
  override get message(): string {
    return `${this.operation} timed out after ${this.millis} ms`
  }
}

/** The TLS handshake failed: a peer without a valid certificate, or one this side does not trust. */
export class TlsRefused extends Schema.TaggedError<TlsRefused>()("TlsRefused", {
  operation: TransportOperationSchema,
  /** The OpenSSL or Node error code, e.g. `ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE`. */
  code: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.operation}: TLS refused (${this.code}): ${this.reason}`
  }
}

/** The peer could not be reached: connection refused, no route, unknown host. */
export class ConnectFailed extends Schema.TaggedError<ConnectFailed>()("ConnectFailed", {
  address: Schema.String,
  code: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `connect to ${this.address} failed (${this.code}): ${this.reason}`
  }
}

/** Any other I/O failure (a file that cannot be opened, a port already in use, …). */
export class TransportFailed extends Schema.TaggedError<TransportFailed>()("TransportFailed", {
  operation: TransportOperationSchema,
  code: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `${this.operation} failed (${this.code}): ${this.reason}`
  }
}

/** Every failure a transport reports. */
export type TransportError = TransportClosed | TransportTimeout | TlsRefused | ConnectFailed | TransportFailed

/** Every transport failure, as a schema: they travel in a peer's abort and come back as the same classes. */
export const TransportErrorSchema = Schema.Union([
  TransportClosed,
  TransportTimeout,
  TlsRefused,
  ConnectFailed,
  TransportFailed
])
