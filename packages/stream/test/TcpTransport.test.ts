import * as tls from "node:tls"
import { crc32 } from "node:zlib"
import { describe, expect, it } from "@effect/vitest"
import {
  FrameReader,
  FrameWriter,
  type ManifestDevice,
  TcpTransport,
  type Transport,
  withTimeouts
} from "@lockstep/stream"
import { Effect, Fiber, Option, Ref, Stream } from "effect"
import { makeCertificates, tlsOf } from "./Certificates.js"

const devices: ReadonlyArray<ManifestDevice> = Array.from({ length: 8 }, (_, i) => ({
  id: `gpu${i}`,
  kind: "pci",
  flags: 7,
  compat: new Uint8Array(0)
}))

/** Sends `perDevice` bytes for each of the 8 devices concurrently, in `piece`-byte reads. */
const sendDevices = (transport: Transport, perDevice: number, piece: number) =>
  Effect.gen(function* () {
    const writer = yield* FrameWriter.make(transport)
    yield* writer.manifest(devices)
    yield* Effect.forEach(
      devices,
      (_, d) =>
        Effect.gen(function* () {
          for (let at = 0; at < perDevice; at += piece) {
            yield* writer.chunk(d, new Uint8Array(Math.min(piece, perDevice - at)).fill(d + 1))
          }
          yield* writer.endDevice(d)
        }),
      { concurrency: "unbounded" }
    )
    return yield* writer.end
  })

/** Reads every frame, folding each device's bytes into a CRC32 and a count. */
const receiveDevices = (transport: Transport) =>
  Stream.runFold(
    FrameReader.frames(transport),
    () => devices.map(() => ({ crc: 0, bytes: 0 })),
    (acc, frame) => {
      if (frame._tag === "Chunk") {
        const slot = acc[frame.device]
        if (slot !== undefined) {
          slot.crc = crc32(frame.payload, slot.crc)
          slot.bytes += frame.payload.length
        }
      }
      return acc
    }
  )

const expectedDevices = (perDevice: number) =>
  devices.map((_, d) => ({ crc: crc32(new Uint8Array(perDevice).fill(d + 1)), bytes: perDevice }))

describe("TcpTransport", () => {
  it.live("carries a framed stream of 8 devices over loopback, and an answer back", () =>
    Effect.gen(function* () {
      const listener = yield* TcpTransport.listen()
      const perDevice = 3 * 1024 * 1024 + 17
      const destination = Effect.gen(function* () {
        const transport = yield* listener.accept
        const received = yield* receiveDevices(transport)
        const answer = yield* FrameWriter.make(transport, { peerManifest: { _tag: "Manifest", devices } })
        yield* answer.control("commit")
        yield* answer.end
        return received
      })
      const source = Effect.gen(function* () {
        const transport = yield* TcpTransport.connect({ host: listener.host, port: listener.port })
        const sent = yield* sendDevices(transport, perDevice, 100_000)
        const back = yield* Stream.runCollect(
          FrameReader.frames(transport, { peerManifest: { _tag: "Manifest", devices } })
        )
        return { sent, back }
      })
      const [received, { sent, back }] = yield* Effect.all([destination, source], { concurrency: 2 })
      expect(received).toEqual(expectedDevices(perDevice))
      expect(sent.bytes).toBe(8 * perDevice)
      expect(back.map((f) => f._tag)).toEqual(["Control", "StreamEnd"])
    })
  )

  it.live("back-pressure: a peer that does not read stops the writer with bounded buffering", () =>
    Effect.gen(function* () {
      const listener = yield* TcpTransport.listen()
      const [client, server] = yield* Effect.all(
        [TcpTransport.connect({ host: listener.host, port: listener.port }), listener.accept],
        { concurrency: 2 }
      )
      const total = 256 * 1024 * 1024
      const accepted = yield* Ref.make(0)
      const block = new Uint8Array(1024 * 1024)
      const writer = yield* Effect.forkChild(
        Effect.gen(function* () {
          for (let sent = 0; sent < total; sent += block.length) {
            yield* client.write([block])
            yield* Ref.update(accepted, (n) => n + block.length)
          }
          yield* client.end
        })
      )
      yield* Effect.sleep("300 millis")
      const held = yield* Ref.get(accepted)
      expect(writer.pollUnsafe()).toBeUndefined()
      // Kernel socket buffers on loopback hold a few MiB; the writer must be far from done.
      expect(held).toBeLessThan(64 * 1024 * 1024)
      let read = 0
      for (;;) {
        const bytes = yield* server.read
        if (Option.isNone(bytes)) break
        read += bytes.value.length
      }
      yield* Fiber.join(writer)
      expect(read).toBe(total)
    })
  )

  it.live("reports a refused connection, a read timeout, and a peer that went away", () =>
    Effect.gen(function* () {
      const listener = yield* TcpTransport.listen()
      const port = listener.port
      const refused = yield* Effect.flip(
        Effect.scoped(
          Effect.gen(function* () {
            const closed = yield* Effect.scoped(Effect.map(TcpTransport.listen(), (l) => l.port))
            return yield* TcpTransport.connect({ host: "127.0.0.1", port: closed })
          })
        )
      )
      expect(refused).toMatchObject({ _tag: "TransportError", reason: { _tag: "ConnectFailed", code: "ECONNREFUSED" } })
      const [client, server] = yield* Effect.all([TcpTransport.connect({ host: "127.0.0.1", port }), listener.accept], {
        concurrency: 2
      })
      const timedOut = yield* Effect.flip(withTimeouts(client, { read: "100 millis" }).read)
      expect(timedOut).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportTimeout", operation: "read", millis: 100 }
      })
      yield* server.close
      // The peer's close is an end of stream (FIN) or a reset, never a hang.
      const after = yield* Effect.exit(client.read)
      expect(after._tag === "Success" ? Option.isNone(after.value) : true).toBe(true)
      const local = yield* Effect.flip(server.write([new Uint8Array(1)]))
      expect(local).toMatchObject({ _tag: "TransportError", reason: { _tag: "TransportClosed", by: "local" } })
      const writes = yield* Effect.flip(
        Effect.forever(Effect.andThen(client.write([new Uint8Array(64 * 1024)]), Effect.sleep("1 millis")))
      )
      expect(writes.reason._tag).toBe("TransportClosed")
    })
  )
})

describe("TcpTransport with mutual TLS", () => {
  it.live("accepts peers whose certificates chain to the CA, and carries the stream", () =>
    Effect.gen(function* () {
      const certs = yield* makeCertificates
      const listener = yield* TcpTransport.listen({ tls: tlsOf(certs.ca, certs.server) })
      const perDevice = 256 * 1024
      const manifest = { _tag: "Manifest", devices } as const
      const [received, { sent, back }] = yield* Effect.all(
        [
          Effect.gen(function* () {
            const transport = yield* listener.accept
            const received = yield* receiveDevices(transport)
            // The source has half-closed its direction; the answer still goes back.
            const answer = yield* FrameWriter.make(transport, { peerManifest: manifest })
            yield* answer.control("commit")
            yield* answer.end
            return received
          }),
          Effect.gen(function* () {
            const transport = yield* TcpTransport.connect({
              host: "localhost",
              port: listener.port,
              tls: tlsOf(certs.ca, certs.client),
              // TLS sockets have no onread: the option is ignored, and the transport gives its bytes.
              recycledReads: true
            })
            expect(transport.lends).toBeUndefined()
            const sent = yield* sendDevices(transport, perDevice, 50_000)
            const back = yield* Stream.runCollect(FrameReader.frames(transport, { peerManifest: manifest }))
            return { sent, back }
          })
        ],
        { concurrency: 2 }
      )
      expect(received).toEqual(expectedDevices(perDevice))
      expect(sent.bytes).toBe(8 * perDevice)
      expect(back.map((f) => (f._tag === "Control" ? f.kind : f._tag))).toEqual(["commit", "StreamEnd"])
    })
  )

  it.live("refuses a client with no certificate or an untrusted one before any frame is read", () =>
    Effect.gen(function* () {
      const certs = yield* makeCertificates
      const listener = yield* TcpTransport.listen({ tls: tlsOf(certs.ca, certs.server) })
      // A client with no certificate at all (node:tls directly: our API always presents one).
      const bare = tls.connect({ host: "127.0.0.1", port: listener.port, ca: certs.ca, servername: "localhost" })
      bare.on("error", () => {})
      yield* Effect.addFinalizer(() => Effect.sync(() => bare.destroy()))
      const noCert = yield* Effect.flip(listener.accept)
      expect(noCert).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TlsRefused", operation: "accept", code: "PEER_DID_NOT_RETURN_A_CERTIFICATE" }
      })

      const [clientError, serverError] = yield* Effect.all(
        [
          Effect.flip(
            TcpTransport.connect({
              host: "127.0.0.1",
              port: listener.port,
              tls: { ...tlsOf(certs.ca, certs.rogueClient), servername: "localhost" }
            })
          ),
          Effect.flip(listener.accept)
        ],
        { concurrency: 2 }
      )
      expect(clientError).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TlsRefused", operation: "connect", code: "PEER_REFUSED" }
      })
      expect(serverError).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TlsRefused", operation: "accept", code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE" }
      })
      // The refused client never reached `accept`; a valid one still does.
      const [ok] = yield* Effect.all(
        [
          TcpTransport.connect({ host: "localhost", port: listener.port, tls: tlsOf(certs.ca, certs.client) }),
          listener.accept
        ],
        { concurrency: 2 }
      )
      expect(ok.peer).toMatch(/^127\.0\.0\.1:/)
    })
  )

  it.live("connect gives up after its timeout when the server never completes the handshake", () =>
    Effect.gen(function* () {
      const certs = yield* makeCertificates
      const silent = yield* TcpTransport.listen()
      const error = yield* Effect.flip(
        TcpTransport.connect({
          host: "localhost",
          port: silent.port,
          tls: tlsOf(certs.ca, certs.client),
          timeout: "200 millis"
        })
      )
      expect(error).toMatchObject({
        _tag: "TransportError",
        reason: { _tag: "TransportTimeout", operation: "connect", millis: 200 }
      })
    })
  )

  it.live("a client refuses a server whose certificate it does not trust", () =>
    Effect.gen(function* () {
      const certs = yield* makeCertificates
      const listener = yield* TcpTransport.listen({ tls: tlsOf(certs.rogueCa, certs.rogueServer) })
      const error = yield* Effect.flip(
        TcpTransport.connect({ host: "localhost", port: listener.port, tls: tlsOf(certs.ca, certs.client) })
      )
      expect(error).toMatchObject({ _tag: "TransportError", reason: { _tag: "TlsRefused", operation: "connect" } })
    })
  )
})
