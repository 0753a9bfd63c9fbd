/*
 * A waiting destination meets strangers before its source: an HTTP probe, a port scanner, a
 * client without TLS or with a certificate its CA did not sign, a Lockstep source without TLS.
 * It refuses each, says why on stderr, and keeps waiting; the real source then migrates. Both
 * sides say when TLS is required, and connecting by IP address draws no Node warning.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Certificates, makeCertificates } from "../../packages/stream/test/Certificates.js"
import { type Running, startLockstep, waitFor } from "./Processes.js"

const scenario = {
  devices: [
    { id: "gpu0", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 65536 } },
    { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P", "PRE_COPY"], sim: { stateSize: 65536 } }
  ],
  topology: "shared-iommu",
  migration: { downtimeLimitMs: 100 }
}

let dir = ""
let certs: Certificates
const file = (name: string) => join(dir, name)
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "lockstep-strangers-"))
  certs = await Effect.runPromise(Effect.scoped(makeCertificates))
  await writeFile(file("scenario.json"), JSON.stringify(scenario))
  await writeFile(file("ca.pem"), certs.ca)
  for (const role of ["server", "client"] as const) {
    await writeFile(file(`${role}.pem`), certs[role].cert)
    await writeFile(file(`${role}.key`), certs[role].key)
  }
})
afterAll(() => rm(dir, { recursive: true, force: true }))

const tlsFlags = (role: "server" | "client") => [
  "--tls-cert",
  file(`${role}.pem`),
  "--tls-key",
  file(`${role}.key`),
  "--tls-ca",
  file("ca.pem")
]

const refusals = (run: Running) => run.stderr().match(/refused a connection.*still waiting for the source/g) ?? []

/** Connects, sends `bytes` (if any), and hangs up once the peer does or after a moment. */
const probe = (port: number, bytes: string | undefined) =>
  new Promise<void>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => {
      if (bytes === undefined) socket.end()
      else socket.write(bytes)
    })
    socket.on("error", () => {})
    socket.on("data", () => {})
    socket.setTimeout(3000, () => socket.destroy())
    socket.on("close", () => resolve())
  })

const listeningPort = (run: Running) =>
  waitFor("the destination to listen", () => /listening on 127\.0\.0\.1:(\d+)/.exec(run.stderr())?.[1])

describe("a waiting destination", () => {
  it("refuses an HTTP probe and a port scan, keeps waiting, then migrates its source", async () => {
    const destination = startLockstep(["migrate", "--listen", "0", "--json", file("scenario.json")])
    try {
      const port = Number(await listeningPort(destination))
      await probe(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      await waitFor("the HTTP probe to be refused", () => (refusals(destination).length >= 1 ? true : undefined))
      await probe(port, undefined)
      await waitFor("the port scan to be refused", () => (refusals(destination).length >= 2 ? true : undefined))
      expect(destination.stderr()).toMatch(/refused a connection from 127\.0\.0\.1:\d+: it sent an HTTP request/)
      expect(destination.stderr()).toContain("it closed the connection without sending a manifest")
      const source = startLockstep([
        "migrate",
        "--connect",
        `127.0.0.1:${port}`,
        "--journal",
        file("journal-plain.json"),
        "--json",
        file("scenario.json")
      ])
      const [s, d] = await Promise.all([source.exited, destination.exited])
      expect(s.code, s.stderr).toBe(0)
      expect(d.code, d.stderr).toBe(0)
      expect(JSON.parse(d.stdout)).toMatchObject({ ok: true, role: "destination", violations: 0 })
    } finally {
      destination.child.kill("SIGKILL")
    }
  }, 120_000)

  it("with mutual TLS, refuses plain and unsigned clients saying TLS is required, then migrates its source by IP", async () => {
    const destination = startLockstep([
      "migrate",
      "--listen",
      "0",
      ...tlsFlags("server"),
      "--json",
      file("scenario.json")
    ])
    try {
      const port = Number(await listeningPort(destination))
      // A plain TCP client: it gets no TLS handshake, and the destination says TLS is required.
      await probe(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
      await waitFor("the plain client to be refused", () => (refusals(destination).length >= 1 ? true : undefined))
      expect(destination.stderr()).toMatch(/refused a connection: 127\.0\.0\.1:\d+: .*this listener requires TLS/)
      // A TLS client whose certificate the destination's CA did not sign.
      await new Promise<void>((resolve) => {
        const rogue = tls.connect({
          host: "127.0.0.1",
          port,
          ca: certs.ca,
          cert: certs.rogueClient.cert,
          key: certs.rogueClient.key,
          checkServerIdentity: () => undefined
        })
        rogue.on("error", () => {})
        rogue.on("data", () => {})
        rogue.on("close", () => resolve())
      })
      await waitFor("the rogue client to be refused", () => (refusals(destination).length >= 2 ? true : undefined))
      // A Lockstep source without TLS: it is told what to add, and the destination keeps waiting.
      const plainSource = await startLockstep([
        "migrate",
        "--connect",
        `127.0.0.1:${port}`,
        "--journal",
        file("journal-plain-source.json"),
        file("scenario.json")
      ]).exited
      expect(plainSource.code).toBe(1)
      expect(plainSource.stderr).toContain(
        "if it listens with mutual TLS, give this side --tls-cert, --tls-key and --tls-ca as well"
      )
      await waitFor("the plain source to be refused", () => (refusals(destination).length >= 3 ? true : undefined))
      // The real source, by IP address.
      const source = startLockstep([
        "migrate",
        "--connect",
        `127.0.0.1:${port}`,
        ...tlsFlags("client"),
        "--journal",
        file("journal-tls.json"),
        "--json",
        file("scenario.json")
      ])
      const [s, d] = await Promise.all([source.exited, destination.exited])
      expect(s.code, s.stderr).toBe(0)
      expect(d.code, d.stderr).toBe(0)
      expect(s.stderr).not.toContain("DEP0123")
      expect(s.stderr).not.toContain("Warning")
      expect(JSON.parse(s.stdout)).toMatchObject({ ok: true, role: "source", confirmed: true, violations: 0 })
    } finally {
      destination.child.kill("SIGKILL")
    }
  }, 180_000)
})
