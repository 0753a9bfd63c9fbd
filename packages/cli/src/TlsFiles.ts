import { X509Certificate } from "node:crypto"
import { createSecureContext } from "node:tls"
import { readTextFile } from "@lockstep/coordinator"
import type { TcpTransport } from "@lockstep/stream"
import { Effect, type FileSystem, Option } from "effect"
import { type CliFailure, invalidInput } from "./CliFailure.js"

/** The three mutual-TLS flags of `migrate`, as given. */
export interface TlsFlags {
  readonly cert: Option.Option<string>
  readonly key: Option.Option<string>
  readonly ca: Option.Option<string>
}

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const readPem = (flag: string, file: string): Effect.Effect<string, CliFailure, FileSystem.FileSystem> =>
  readTextFile(file).pipe(
    Effect.mapError(({ reason }) =>
      invalidInput(
        reason._tag === "JsonFileUnreadable" && reason.code === "ENOENT"
          ? `${flag}: ${file} does not exist; give the path of a PEM file`
          : `${flag}: cannot read ${file}: ${reason._tag === "JsonFileUnreadable" ? reason.detail : reason.message}`
      )
    )
  )

const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/** Every certificate of a PEM bundle parses, and there is at least one. */
const checkCertificates = (flag: string, file: string, pem: string, what: string): Effect.Effect<void, CliFailure> => {
  const blocks = pem.match(certificateBlock) ?? []
  if (blocks.length === 0) return Effect.fail(invalidInput(`${flag}: ${file} holds no PEM certificate; give ${what}`))
  for (const block of blocks) {
    try {
      new X509Certificate(block)
    } catch (cause) {
      return Effect.fail(
        invalidInput(`${flag}: ${file} holds a certificate that cannot be read (${reasonOf(cause)}); give ${what}`)
      )
    }
  }
  return Effect.void
}

/** The key belongs to the certificate, and each is readable: what OpenSSL checks when it builds a context. */
const checkPair = (files: { readonly cert: string; readonly key: string }, pems: TcpTransport.TlsOptions) =>
  Effect.try({
    try: () => {
      createSecureContext({ cert: pems.cert, key: pems.key })
    },
    catch: (cause) =>
      invalidInput(
        cause instanceof Error && "code" in cause && cause.code === "ERR_OSSL_X509_KEY_VALUES_MISMATCH"
          ? `--tls-key: ${files.key} is not the key of the certificate in --tls-cert ${files.cert}; give the private key the certificate was issued for`
          : `--tls-key: ${files.key} is not a PEM private key OpenSSL can read (${reasonOf(cause)}); give the certificate's private key`
      )
  })

/**
 * Mutual TLS from the three flags: all of them or none. Each file is read and checked at start
 * (the certificates parse, the key belongs to the certificate, the CA file holds a certificate),
 * so a wrong file is refused with its flag before anything listens or connects.
 */
export const tlsOf = (
  flags: TlsFlags
): Effect.Effect<TcpTransport.TlsOptions | undefined, CliFailure, FileSystem.FileSystem> => {
  const given = [flags.cert, flags.key, flags.ca].filter(Option.isSome).length
  if (given === 0) return Effect.succeed(undefined)
  if (Option.isNone(flags.cert) || Option.isNone(flags.key) || Option.isNone(flags.ca))
    return Effect.fail(invalidInput("mutual TLS needs all three of --tls-cert, --tls-key and --tls-ca"))
  const files = { cert: flags.cert.value, key: flags.key.value, ca: flags.ca.value }
  return Effect.gen(function* () {
    const pems = yield* Effect.all({
      cert: readPem("--tls-cert", files.cert),
      key: readPem("--tls-key", files.key),
      ca: readPem("--tls-ca", files.ca)
    })
    yield* checkCertificates("--tls-cert", files.cert, pems.cert, "this side's certificate (PEM)")
    yield* checkCertificates("--tls-ca", files.ca, pems.ca, "the CA certificate the peer's certificate chains to (PEM)")
    yield* checkPair(files, pems)
    return pems
  })
}
