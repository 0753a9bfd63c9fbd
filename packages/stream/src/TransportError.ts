import { Schema } from "effect"

/** What a transport was doing when it failed. */
export const TransportOperationSchema = Schema.Literals(["connect", "listen", "accept", "read", "write", "end", "open"])

/** What a transport was doing when it failed. */
export type TransportOperation = typeof TransportOperationSchema.Type

/**
 * The channel is closed: by the peer (reset, hung up mid-stream) or locally (used after `close`
 * or `end`). Bytes written but not yet read by the peer may be lost.
 */
export class TransportClosed extends Schema.TaggedClass<TransportClosed>()("TransportClosed", {
  operation: TransportOperationSchema,
  by: Schema.Literals(["peer", "local"]),
  reason: Schema.String
}) {
  get message(): string {
    return `${this.operation}: channel closed by ${this.by === "peer" ? "the peer" : "this side"}: ${this.reason}`
  }
}

/** An operation did not complete within its time limit. */
export class TransportTimeout extends Schema.TaggedClass<TransportTimeout>()("TransportTimeout", {
  operation: TransportOperationSchema,
  millis: Schema.Number
}) {
  get message(): string {
    return `${this.operation} timed out after ${this.millis} ms`
  }
}

/** The TLS handshake failed: a peer without a valid certificate, or one this side does not trust. */
export class TlsRefused extends Schema.TaggedClass<TlsRefused>()("TlsRefused", {
  operation: TransportOperationSchema,
  /** The OpenSSL or Node error code, e.g. `ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE`. */
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.operation}: TLS refused (${this.code}): ${this.reason}`
  }
}

/** The peer could not be reached: connection refused, no route, unknown host. */
export class ConnectFailed extends Schema.TaggedClass<ConnectFailed>()("ConnectFailed", {
  address: Schema.String,
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `connect to ${this.address} failed (${this.code}): ${this.reason}`
  }
}

/** Any other I/O failure (a file that cannot be opened, a port already in use, …). */
export class TransportFailed extends Schema.TaggedClass<TransportFailed>()("TransportFailed", {
  operation: TransportOperationSchema,
  code: Schema.String,
  reason: Schema.String
}) {
  get message(): string {
    return `${this.operation} failed (${this.code}): ${this.reason}`
  }
}

/** Why a transport failed, as a schema (it travels in a peer's abort). */
export const TransportErrorReason = Schema.Union([
  TransportClosed,
  TransportTimeout,
  TlsRefused,
  ConnectFailed,
  TransportFailed
])

/** Why a transport failed. */
export type TransportErrorReason = typeof TransportErrorReason.Type

/**
 * Every failure a transport reports; `reason` says which (`Effect.catchReason("TransportError",
 * "TransportTimeout", …)` handles one).
 */
export class TransportError extends Schema.TaggedError<TransportError>()("TransportError", {
  reason: TransportErrorReason
}) {
  override get message(): string {
    return this.reason.message
  }

  static transportClosed(fields: ConstructorParameters<typeof TransportClosed>[0]): TransportError {
    return new TransportError({ reason: new TransportClosed(fields) })
  }

  static transportTimeout(fields: ConstructorParameters<typeof TransportTimeout>[0]): TransportError {
    return new TransportError({ reason: new TransportTimeout(fields) })
  }

  static tlsRefused(fields: ConstructorParameters<typeof TlsRefused>[0]): TransportError {
    return new TransportError({ reason: new TlsRefused(fields) })
  }

  static connectFailed(fields: ConstructorParameters<typeof ConnectFailed>[0]): TransportError {
    return new TransportError({ reason: new ConnectFailed(fields) })
  }

  static transportFailed(fields: ConstructorParameters<typeof TransportFailed>[0]): TransportError {
    return new TransportError({ reason: new TransportFailed(fields) })
  }
}
