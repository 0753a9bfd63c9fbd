/*
 * End to end over TCP loopback, on real time, with P2P traffic during pre-copy: the fabric
 * dirties target pages, later rounds re-send them, and the resumed state still verifies byte
 * for byte. Once in the clear and once over mutual TLS.
 */
import { describe, expect, it } from "@effect/vitest"
import { Journal } from "@lockstep/migration"
import { TcpTransport, type Transport } from "@lockstep/stream"
import { Effect } from "effect"
import {
  allIn,
  assertNeverBothRun,
  assertSafe,
  type GroupDoc,
  makePair,
  migrate,
  successOf
} from "../../packages/migration/test/Harness.js"
import { makeCertificates, tlsOf } from "../../packages/stream/test/Certificates.js"

const gpus: GroupDoc = {
  devices: ["gpu0", "gpu1", "gpu2"].map((id) => ({
    id,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: { stateSize: 256 * 1024, arcLatencyMs: 1, dirtyBytesPerSecond: 512 * 1024 }
  })),
  topology: "shared-iommu"
}

/** A connected pair of TCP transports on loopback, closed with the scope. */
const loopback = (tls?: { readonly server: TcpTransport.TlsOptions; readonly client: TcpTransport.TlsOptions }) =>
  Effect.gen(function* () {
    const listener = yield* TcpTransport.listen(tls === undefined ? {} : { tls: tls.server })
    const [destination, source] = yield* Effect.all(
      [
        listener.accept,
        TcpTransport.connect({
          host: "127.0.0.1",
          port: listener.port,
          timeout: 5_000,
          ...(tls === undefined ? {} : { tls: tls.client })
        })
      ],
      { concurrency: 2 }
    )
    return [source, destination] as const satisfies readonly [Transport, Transport]
  })

const migrateOver = (transports: readonly [Transport, Transport]) =>
  Effect.gen(function* () {
    const pair = yield* makePair(gpus, gpus, { writesPerSecond: 3000, seed: 5 })
    const out = yield* migrate(pair, {
      transports: Effect.succeed(transports),
      source: { bandwidthLimit: 16 * 1024 * 1024, downtimeLimitMs: 20, maxRounds: 8, chunkBytes: 64 * 1024 },
      destination: {}
    })
    const source = yield* successOf(out.source)
    const destination = yield* successOf(out.destination)
    expect(source.rounds).toBeGreaterThanOrEqual(2)
    // Pages dirtied by P2P writes during pre-copy went again in later rounds.
    expect(Object.values(source.devices).some((d) => d.precopyBytes > 256 * 1024)).toBe(true)
    expect(out.verified).toEqual([true, true, true])
    expect(destination.bytes).toBe(source.bytes)
    expect(source.confirmed).toBe(true)
    expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
    expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
    expect((yield* Journal.ownership(pair.journal))._tag).toBe("DestinationOwns")
    expect(pair.source.fabric.writesLanded()).toBeGreaterThan(0)
    yield* assertNeverBothRun(pair)
    yield* assertSafe(pair)
  })

describe("migration over TCP loopback", () => {
  it.live("migrates three P2P GPUs with traffic running, and the resumed state verifies", () =>
    Effect.scoped(Effect.flatMap(loopback(), migrateOver))
  )

  it.live("migrates over mutual TLS", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const certs = yield* makeCertificates
        const transports = yield* loopback({
          server: tlsOf(certs.ca, certs.server),
          client: { ...tlsOf(certs.ca, certs.client), servername: "localhost" }
        })
        yield* migrateOver(transports)
      })
    )
  )
})
