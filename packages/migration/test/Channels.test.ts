/**
 * Migrations over several channels (QEMU's multifd): device i travels on channel i mod N. What
 * each channel carried is read back from the bytes written on it (decoded by the harness's
 * `framesOf`), never from Lockstep's own events; the expected layout comes from the rule alone.
 */
import { describe, expect, it } from "@effect/vitest"
import { GroupRuntime } from "@lockstep/coordinator"
import {
  ChannelRefused,
  ChannelsUnavailable,
  Migration,
  MigrationFailed,
  MigrationJournal,
  MigrationTransport,
  PeerAborted
} from "@lockstep/migration"
import { compareMemory, runOnVirtualTime } from "@lockstep/sim"
import { type Frame, FrameWriter, MemoryTransport, TcpTransport, type Transport } from "@lockstep/stream"
import { Effect, Exit, Layer, Queue } from "effect"
import {
  allIn,
  assertNeverBothRun,
  assertRolledBack,
  assertSafe,
  cutAfter,
  failureOf,
  framesOf,
  type GroupDoc,
  makePair,
  migrate,
  successOf
} from "./Harness.js"

const stateSize = 32 * 1024

/** Five P2P GPUs, all pre-copying. */
const fiveGpus: GroupDoc = {
  devices: [0, 1, 2, 3, 4].map((i) => ({
    id: `gpu${i}`,
    kind: "pci",
    flags: ["STOP_COPY", "P2P", "PRE_COPY"],
    sim: { stateSize, pageSize: 4096, arcLatencyMs: 2, dirtyBytesPerSecond: 128 * 1024 }
  })),
  topology: "shared-iommu"
}
const ids = fiveGpus.devices.map((d) => d.id)

/**
 * Connections in memory: channel 0's pair, and the extra ones the source opens and the
 * destination accepts (in the order opened). Every byte a source end writes is kept, per
 * connection, copied as written (the writer lends pooled buffers).
 */
const network = Effect.gen(function* () {
  const incoming = yield* Queue.unbounded<Transport>()
  const written: Array<Array<Uint8Array>> = []
  const record = (t: Transport): Transport => {
    const chunks: Array<Uint8Array> = []
    written.push(chunks)
    return {
      ...t,
      write: (cs) =>
        Effect.suspend(() => {
          for (const c of cs) chunks.push(Uint8Array.from(c))
          return t.write(cs)
        })
    }
  }
  const channelZero = Effect.map(MemoryTransport.pair(), ([a, b]) => [record(a), b] as const)
  const connect = (wrap: (t: Transport, channel: number) => Transport = (t) => t) =>
    Effect.gen(function* () {
      const [a, b] = yield* MemoryTransport.pair()
      yield* Queue.offer(incoming, b)
      return wrap(record(a), written.length - 1)
    })
  return { incoming, written, channelZero, connect, accept: Queue.take(incoming) }
})

/** What one channel carried: its manifest's devices, the devices of its chunks, those it ended with data. */
const carried = (frames: ReadonlyArray<Frame>) => {
  const manifest = frames.find((f) => f._tag === "Manifest")
  const named = manifest?._tag === "Manifest" ? manifest.devices.map((d) => d.id) : []
  const withData = new Set<string>()
  const endedWithData = new Set<string>()
  for (const f of frames) {
    if (f._tag === "Chunk") withData.add(named[f.device] ?? "?")
    if (f._tag === "DeviceEnd" && f.bytes > 0) endedWithData.add(named[f.device] ?? "?")
  }
  return {
    named,
    withData: [...withData].sort(),
    endedWithData: [...endedWithData].sort(),
    streamEnded: frames.at(-1)?._tag === "StreamEnd"
  }
}

/** The layers that give each side its connection (and extra channels) over `listener`. */
type TcpLinks = (listener: TcpTransport.Listener) => {
  readonly source: ReturnType<typeof MigrationTransport.accept>
  readonly destination: ReturnType<typeof MigrationTransport.accept>
}

/**
 * A migration of `doc` over 3 TCP channels on a listener of this process, each side connected
 * by `links`: the group arrives byte for byte (compared when the destination votes: validated, in
 * STOP; once it runs, its devices write again), the source stays stopped, and the rule holds.
 */
const overTcp = (doc: GroupDoc, links: TcpLinks) =>
  Effect.gen(function* () {
    const pair = yield* makePair(doc)
    const listener = yield* TcpTransport.listen({ host: "127.0.0.1", port: 0 })
    const link = links(listener)
    const limits = { compatibility: pair.compatibility, peerTimeoutMs: 10_000, arcTimeoutMs: 2_000 }
    const source = Migration.source({ ...limits, channels: 3 }).pipe(
      Effect.provide(
        Layer.mergeAll(Layer.succeed(GroupRuntime, pair.source), link.source, MigrationJournal.layer(pair.journal))
      )
    )
    const verified: Array<string> = []
    const verify = Effect.forEach([...pair.source.devices.values()], (device) => {
      const twin = pair.destination.devices.get(device.id)
      return twin === undefined
        ? Effect.void
        : Effect.map(compareMemory(device, twin), (c) => {
            verified.push(`${device.id} ${c._tag}`)
          })
    }).pipe(Effect.asVoid)
    const destination = Migration.destination({ ...limits, beforeVote: verify }).pipe(
      Effect.provide(Layer.mergeAll(Layer.succeed(GroupRuntime, pair.destination), link.destination))
    )
    const [sent, received] = yield* Effect.all([source, destination], { concurrency: 2 })
    expect(received.migration).toBe(sent.migration)
    expect(received.devices).toEqual(sent.devices)
    expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
    expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
    expect(verified).toEqual(ids.map((id) => `${id} Identical`))
    yield* assertNeverBothRun(pair)
    yield* assertSafe(pair)
  }).pipe(Effect.scoped)

describe("migration over several channels", () => {
  for (const n of [2, 3]) {
    it.effect(`${n} channels: device i travels on channel i mod ${n}, and the group arrives byte for byte`, () =>
      Effect.gen(function* () {
        const pair = yield* runOnVirtualTime(makePair(fiveGpus))
        const net = yield* network
        const out = yield* runOnVirtualTime(
          migrate(pair, {
            source: { channels: n, openChannel: net.connect() },
            destination: { acceptChannel: net.accept },
            transports: net.channelZero
          })
        )
        yield* successOf(out.source)
        yield* successOf(out.destination)
        expect(out.verified).toEqual(ids.map(() => true))
        expect(yield* allIn(pair.source, "STOP_COPY")).toBe(true)
        expect(yield* allIn(pair.destination, "RUNNING")).toBe(true)
        yield* assertNeverBothRun(pair)
        yield* assertSafe(pair)

        expect(net.written).toHaveLength(n)
        net.written.forEach((chunks, channel) => {
          const mine = ids.filter((_, i) => i % n === channel)
          const seen = carried(framesOf(chunks))
          // Channel 0's manifest is the handshake's offer: every device.
          expect(seen.named).toEqual(channel === 0 ? ids : mine)
          expect(seen.withData).toEqual(mine)
          expect(seen.endedWithData).toEqual(mine)
          expect(seen.streamEnded).toBe(true)
        })
      })
    )
  }

  it.effect("one channel: the same bytes on the wire as without the option", () =>
    Effect.gen(function* () {
      const run = (channels: number | undefined) =>
        Effect.gen(function* () {
          const pair = yield* runOnVirtualTime(makePair(fiveGpus))
          const net = yield* network
          const out = yield* runOnVirtualTime(
            migrate(pair, {
              source: channels === undefined ? {} : { channels },
              destination: { migrationId: () => "fixed-id" },
              transports: net.channelZero
            })
          )
          yield* successOf(out.source)
          yield* assertSafe(pair)
          yield* assertNeverBothRun(pair)
          expect(net.written).toHaveLength(1)
          return Buffer.concat(net.written[0] ?? [])
        })
      const without = yield* run(undefined)
      const one = yield* run(1)
      expect(one.length).toBeGreaterThan(ids.length * stateSize)
      expect(one.equals(without)).toBe(true)
    })
  )

  it.effect("a connection naming another migration is refused, and both groups are left as they were", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(fiveGpus))
      const net = yield* network
      // The stranger is first in line: the destination accepts it as channel 1.
      const [stranger, strangerEnd] = yield* MemoryTransport.pair()
      yield* Queue.offer(net.incoming, strangerEnd)
      const writer = yield* FrameWriter.make(stranger)
      const out = yield* runOnVirtualTime(
        Effect.gen(function* () {
          yield* writer.manifest(
            [1, 3].map((i) => ({ id: ids[i] ?? "?", kind: "pci" as const, flags: 0, compat: new Uint8Array() }))
          )
          yield* writer.control("accept", {
            payload: new TextEncoder().encode(JSON.stringify({ _tag: "Joined", migration: "not-this-one", channel: 1 }))
          })
          return yield* migrate(pair, {
            source: { channels: 2, openChannel: net.connect() },
            destination: { acceptChannel: net.accept },
            transports: net.channelZero
          })
        })
      )
      const destination = yield* failureOf(out.destination)
      expect(destination).toBeInstanceOf(MigrationFailed)
      expect(destination.cause).toBeInstanceOf(ChannelRefused)
      expect(destination.cause.message).toContain("not-this-one")
      const source = yield* failureOf(out.source)
      expect(source.cause).toBeInstanceOf(PeerAborted)
      yield* assertRolledBack(pair)
    })
  )

  it.effect("an extra channel cut during the drain fails the migration, and the source group runs again", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(fiveGpus))
      const net = yield* network
      // Without pre-copy every device byte moves in the drain: channel 1 is cut inside its first device's data.
      const cut = (t: Transport, channel: number) => (channel === 1 ? cutAfter(t, stateSize / 2) : t)
      const out = yield* runOnVirtualTime(
        migrate(pair, {
          source: { channels: 3, precopy: false, openChannel: net.connect(cut) },
          destination: { acceptChannel: net.accept },
          transports: net.channelZero
        })
      )
      expect(Exit.isFailure(out.source)).toBe(true)
      expect(Exit.isFailure(out.destination)).toBe(true)
      const source = yield* failureOf(out.source)
      expect(source.phase).toBe("drain")
      yield* assertRolledBack(pair)
    })
  )

  it.effect("channels without a way to open them: the source says so before touching a device", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(fiveGpus))
      const out = yield* runOnVirtualTime(migrate(pair, { source: { channels: 2 } }))
      const source = yield* failureOf(out.source)
      expect(source.cause).toBeInstanceOf(ChannelsUnavailable)
      expect(source.cause.message).toContain("openChannel")
      expect(source.phase).toBe("handshake")
      expect(source.touched).toBe(false)
      yield* failureOf(out.destination)
      yield* assertRolledBack(pair)
    })
  )

  it.live("3 channels over TCP, through the MigrationTransport layers: the group arrives byte for byte", () =>
    overTcp(fiveGpus, (listener) => ({
      source: MigrationTransport.connect({ host: "127.0.0.1", port: listener.port }),
      destination: MigrationTransport.accept(listener)
    }))
  )

  it.live("the destination dials, reading into recycled buffers: 3 channels, the group arrives byte for byte", () =>
    // 1 MiB per device through rings of four 128 KiB slabs (the smallest; 256 KiB of read-ahead asks for less):
    // a chunk frame (256 KiB) spans reads, and payloads wait in the devices queues while the ring turns.
    overTcp(
      {
        ...fiveGpus,
        devices: fiveGpus.devices.map((d) => ({ ...d, sim: { ...d.sim, stateSize: 1024 * 1024 } }))
      },
      // The source listens: its channel 0 and extra channels are the connections it accepts.
      (listener) => ({
        source: MigrationTransport.accept(listener),
        destination: MigrationTransport.connect({
          host: "127.0.0.1",
          port: listener.port,
          recycledReads: true,
          readAheadBytes: 256 * 1024
        })
      })
    )
  )

  it.effect("a source announcing more channels than the destination takes is refused before any data", () =>
    Effect.gen(function* () {
      const pair = yield* runOnVirtualTime(makePair(fiveGpus))
      const net = yield* network
      const out = yield* runOnVirtualTime(
        migrate(pair, {
          source: { channels: 3, openChannel: net.connect() },
          destination: { acceptChannel: net.accept, maxChannels: 2 },
          transports: net.channelZero
        })
      )
      const destination = yield* failureOf(out.destination)
      expect(destination.cause).toBeInstanceOf(ChannelRefused)
      expect(destination.cause.message).toContain("3 channels, at most 2")
      yield* failureOf(out.source)
      yield* assertRolledBack(pair)
    })
  )
})
