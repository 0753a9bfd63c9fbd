import type { MigrationFailed } from "@lockstep/migration"
import type { TlsRefused } from "@lockstep/stream"

/*
 * A waiting destination meets connections that are not its source: a health probe, a port
 * scanner, an HTTP request, a client with the wrong certificate, a source without TLS. None of
 * them gets as far as a manifest, so no device is touched: the destination refuses the stranger,
 * says why, and keeps waiting for its source.
 */

/** The first bytes of a TLS ClientHello record (handshake, version 3.x), in hex. */
const tlsHello = "1603"

/** Methods an HTTP request starts with, in hex (the first four bytes). */
const httpStarts = ["GET ", "POST", "HEAD", "PUT ", "OPTI", "DELE", "PATC", "CONN"].map((m) =>
  Buffer.from(m, "latin1").toString("hex")
)

/** Why the first bytes of a stranger are not a Lockstep stream, from the hex the decoder saw. */
const describeBytes = (found: string): string => {
  if (found.startsWith(tlsHello))
    return "it began a TLS handshake, but this destination listens without TLS (start it with --tls-cert, --tls-key and --tls-ca, or the source without them)"
  if (httpStarts.some((start) => found.startsWith(start))) return "it sent an HTTP request, not a Lockstep stream"
  return `it does not speak the Lockstep protocol (it began with ${found.slice(0, 16)})`
}

/**
 * When a failed destination session was a stranger's connection (it failed in the handshake
 * before a valid manifest arrived, so nothing was touched), why, as a clause; otherwise
 * `undefined`: a real source was refused or failed, and that ends the destination's wait.
 */
export const strangerReason = (error: MigrationFailed): string | undefined => {
  if (error.phase !== "handshake" || error.migration !== undefined) return undefined
  const cause = error.cause
  switch (cause._tag) {
    case "HandshakeRefused":
    case "MigrationInterrupted":
    case "PeerAborted":
      return undefined
    case "FormatError": {
      const reason = cause.reason
      if (reason._tag === "WrongMagic") return describeBytes(reason.found)
      if (reason._tag === "Truncated")
        return reason.offset === 0 && reason.inside === "preamble"
          ? "it closed the connection without sending a manifest"
          : `it hung up in the middle of its first message (${cause.message})`
      return `it did not send a valid manifest (${cause.message})`
    }
    case "ProtocolViolation":
      return cause.got === "the end of the stream"
        ? "it closed the connection without sending a manifest"
        : `it sent ${cause.got} where a manifest belongs`
    case "PeerSilent":
      return `it sent nothing that could start a migration (${cause.message})`
    case "TransportError":
      if (cause.reason._tag === "TransportTimeout")
        return `it sent nothing that could start a migration (${cause.message})`
      if (cause.reason._tag === "TransportClosed") return "it closed the connection before sending a manifest"
      return `it did not send a valid manifest (${cause.message})`
    default:
      return `it did not send a valid manifest (${cause.message})`
  }
}

/** A client refused during the TLS handshake, as a clause (the listener kept waiting). */
export const tlsStrangerReason = (error: TlsRefused): string =>
  error.code === "PEER_DID_NOT_RETURN_A_CERTIFICATE"
    ? "it presented no client certificate (mutual TLS needs one signed by --tls-ca)"
    : error.reason
