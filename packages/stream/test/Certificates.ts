/*
 * Throwaway certificates for the mutual-TLS tests, made with the `openssl` CLI into a fresh
 * temporary directory that the scope removes: a CA with a server and a client certificate,
 * and a second, untrusted CA with its own server and client certificates.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { TcpTransport } from "@lockstep/stream"
import { Effect } from "effect"

/** A certificate and its key, PEM. */
export interface Identity {
  readonly cert: string
  readonly key: string
}

/** Everything a test needs: the trusted CA and identities it signed, and rogue ones. */
export interface Certificates {
  readonly ca: string
  readonly server: Identity
  readonly client: Identity
  readonly rogueCa: string
  readonly rogueServer: Identity
  readonly rogueClient: Identity
}

/** Mutual-TLS options for one side. */
export const tlsOf = (ca: string, identity: Identity): TcpTransport.TlsOptions => ({ ca, ...identity })

export const makeCertificates = Effect.acquireRelease(
  Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "lockstep-tls-"))),
  (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
).pipe(
  Effect.map((dir): Certificates => {
    const file = (name: string) => path.join(dir, name)
    const openssl = (...args: ReadonlyArray<string>) => execFileSync("openssl", args, { stdio: "pipe" })
    const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    const authority = (name: string) => {
      openssl(
        "req",
        "-x509",
        ...key,
        "-keyout",
        file(`${name}.key`),
        "-out",
        file(`${name}.pem`),
        "-days",
        "1",
        "-subj",
        `/CN=${name}`,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign"
      )
      return fs.readFileSync(file(`${name}.pem`), "utf8")
    }
    const identity = (name: string, ca: string, usage: "serverAuth" | "clientAuth"): Identity => {
      openssl("req", ...key, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`), "-subj", `/CN=${name}`)
      fs.writeFileSync(file(`${name}.ext`), `subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=${usage}\n`)
      openssl(
        "x509",
        "-req",
        "-in",
        file(`${name}.csr`),
        "-CA",
        file(`${ca}.pem`),
        "-CAkey",
        file(`${ca}.key`),
        "-CAcreateserial",
        "-out",
        file(`${name}.pem`),
        "-days",
        "1",
        "-extfile",
        file(`${name}.ext`)
      )
      return { cert: fs.readFileSync(file(`${name}.pem`), "utf8"), key: fs.readFileSync(file(`${name}.key`), "utf8") }
    }
    const ca = authority("ca")
    const rogueCa = authority("rogue-ca")
    return {
      ca,
      server: identity("server", "ca", "serverAuth"),
      client: identity("client", "ca", "clientAuth"),
      rogueCa,
      rogueServer: identity("rogue-server", "rogue-ca", "serverAuth"),
      rogueClient: identity("rogue-client", "rogue-ca", "clientAuth")
    }
  })
)
