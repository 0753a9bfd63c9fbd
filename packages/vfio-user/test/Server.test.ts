import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { makeSimDevice, type SimDeviceConfig } from "@lockstep/sim"
import {
  connect,
  encodeRequest,
  type Frame,
  HeaderFlag,
  pciConfigSpace,
  type Request,
  type ServerOptions,
  serve
} from "@lockstep/vfio-user"
import { Effect } from "effect"
import { type RawPeer, rawPeer, tempDir } from "./Harness.js"

const still: SimDeviceConfig = { arcLatencyMs: 0, dirtyBytesPerSecond: 0, stateSize: 8192, pageSize: 4096 }

/** A simulated device served with `options`; the socket path and the device. */
const served = (options: Partial<ServerOptions> = {}, config: SimDeviceConfig = still) =>
  Effect.gen(function* () {
    const dir = yield* tempDir
    const path = join(dir, "sim.sock")
    const sim = yield* makeSimDevice("sim", config)
    yield* serve({ path, device: sim, ...options })
    return { path, sim }
  })

const version: Request = { _tag: "Version", major: 0, minor: 2, capabilities: {} }

/** The next message, which must not be the end of the connection. */
const nextFrame = (peer: RawPeer): Effect.Effect<Frame> =>
  Effect.flatMap(peer.next, (reply) =>
    reply === "closed" ? Effect.die(new Error("the server closed the connection")) : Effect.succeed(reply)
  )

/** Sends one request and returns the message that answers it. */
const ask = (peer: RawPeer, msgId: number, request: Request): Effect.Effect<Frame> =>
  peer.send(encodeRequest(msgId, request)).pipe(Effect.andThen(nextFrame(peer)))

const errnoOf = (reply: Frame) => ((reply.header.flags & HeaderFlag.ERROR) !== 0 ? reply.header.error : 0)

const u32At = (frame: Frame, at: number) =>
  new DataView(frame.payload.buffer, frame.payload.byteOffset, frame.payload.byteLength).getUint32(at, true)

const EBUSY = 16

describe("vfio-user server: connections", () => {
  it.live("serves connections concurrently: one stalled mid-message blocks nobody and is dropped", () =>
    Effect.gen(function* () {
      const { path } = yield* served({ stallTimeoutMs: 1000 })
      const stalled = yield* rawPeer(path)
      expect(errnoOf(yield* ask(stalled, 1, version))).toBe(0)
      // Half a message: 10 bytes of a 16-byte header.
      const getState = encodeRequest(2, { _tag: "GetDeviceState", argsz: 16 })
      yield* stalled.send(getState.subarray(0, 10))
      const other = yield* rawPeer(path)
      expect(errnoOf(yield* ask(other, 1, version))).toBe(0)
      expect(errnoOf(yield* ask(other, 2, { _tag: "GetDeviceState", argsz: 16 }))).toBe(0)
      // The half-sent message was still pending while the other connection was answered: its
      // rest completes it (a server serving one connection at a time would have dropped it first).
      yield* stalled.send(getState.subarray(10))
      expect(errnoOf(yield* nextFrame(stalled))).toBe(0)
      // Left half-sent past the stall timeout, the connection is dropped.
      yield* stalled.send(getState.subarray(0, 10))
      expect(yield* stalled.next).toBe("closed")
      expect(errnoOf(yield* ask(other, 3, { _tag: "GetDeviceState", argsz: 16 }))).toBe(0)
    })
  )

  it.live("lets one connection at a time own the migration; the others may look but get EBUSY", () =>
    Effect.gen(function* () {
      const { path, sim } = yield* served()
      const owner = yield* rawPeer(path)
      const other = yield* rawPeer(path)
      for (const peer of [owner, other]) expect(errnoOf(yield* ask(peer, 1, version))).toBe(0)
      expect(errnoOf(yield* ask(owner, 2, { _tag: "SetDeviceState", argsz: 16, state: "STOP", dataFd: 0 }))).toBe(0)
      // Looking is allowed.
      const state = yield* ask(other, 2, { _tag: "GetDeviceState", argsz: 16 })
      expect([errnoOf(state), u32At(state, 8)]).toEqual([0, 1])
      expect(errnoOf(yield* ask(other, 3, { _tag: "GetStopCopySize", argsz: 16 }))).toBe(0)
      // Changing the migration is not.
      const changes: ReadonlyArray<Request> = [
        { _tag: "SetDeviceState", argsz: 16, state: "RUNNING", dataFd: 0 },
        { _tag: "MigDataRead", argsz: 72, size: 64 },
        { _tag: "MigDataWrite", argsz: 12, data: new Uint8Array(4) },
        { _tag: "DeviceReset" }
      ]
      for (const [i, request] of changes.entries()) expect(errnoOf(yield* ask(other, 10 + i, request))).toBe(EBUSY)
      expect(yield* sim.getState).toBe("STOP")
      // Once the owner leaves, the next connection to change the migration owns it.
      yield* owner.close
      yield* Effect.sleep("20 millis")
      expect(errnoOf(yield* ask(other, 20, { _tag: "SetDeviceState", argsz: 16, state: "RUNNING", dataFd: 0 }))).toBe(0)
      expect(yield* sim.getState).toBe("RUNNING")
    })
  )

  it.live("refuses connections beyond maxConnections", () =>
    Effect.gen(function* () {
      const { path } = yield* served({ maxConnections: 2 })
      const peers = [yield* rawPeer(path), yield* rawPeer(path)]
      for (const peer of peers) expect(errnoOf(yield* ask(peer, 1, version))).toBe(0)
      const third = yield* rawPeer(path)
      expect(yield* third.next).toBe("closed")
    })
  )
})

describe("vfio-user server: what real clients expect", () => {
  it.live("answers a PROBE that carries a data area, echoing the request's argsz and data", () =>
    Effect.gen(function* () {
      const { path } = yield* served()
      const peer = yield* rawPeer(path)
      yield* ask(peer, 1, version)
      const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])
      const reply = yield* ask(peer, 2, { _tag: "ProbeFeature", argsz: 16, feature: 2, get: true, set: true, data })
      expect(errnoOf(reply)).toBe(0)
      // argsz 16, flags = PROBE | GET | SET | MIG_DEVICE_STATE, then the data area as sent.
      expect(u32At(reply, 0)).toBe(16)
      expect(u32At(reply, 4)).toBe((1 << 18) | (1 << 16) | (1 << 17) | 2)
      expect(reply.payload.subarray(8)).toEqual(data)
    })
  )

  it.live("answers GET_IRQ_INFO for each of a ccw device's three interrupt indexes with count 0", () =>
    Effect.gen(function* () {
      const { path } = yield* served({}, { ...still, kind: "ccw", flags: 1 })
      const client = yield* connect({ path, kind: "ccw", timeout: "2 seconds" })
      expect(client.server.device.numIrqs).toBe(3)
      for (let index = 0; index < 3; index++)
        expect(yield* client.irqInfo(index)).toEqual({ index, flags: 0, count: 0 })
      expect(yield* Effect.flip(client.irqInfo(3))).toMatchObject({ code: "EINVAL" })
    })
  )

  it.live("exposes PCI config space with the given vendor and device ids", () =>
    Effect.gen(function* () {
      const configSpace = pciConfigSpace({ vendorId: 0x10de, deviceId: 0x2330, classCode: 0x030200 })
      const { path } = yield* served({ configSpace })
      const client = yield* connect({ path, timeout: "2 seconds" })
      const header = yield* client.regionRead(7, 0n, 16)
      // Vendor id 0x10de and device id 0x2330, little-endian; command and status 0; revision 0;
      // class code 0x030200 as prog-if 00, subclass 02, base class 03; header type 0 at 0x0e.
      expect([...header]).toEqual([0xde, 0x10, 0x30, 0x23, 0, 0, 0, 0, 0, 0x00, 0x02, 0x03, 0, 0, 0, 0])
      expect((yield* client.regionInfo(7)).size).toBe(256n)
    })
  )

  for (const pad of [false, true]) {
    it.live(
      `MIG_DATA_READ replies ${pad ? "padded to the size asked (compatibility mode)" : "carry only the data (the default)"}`,
      () =>
        Effect.gen(function* () {
          const { path, sim } = yield* served(pad ? { padMigDataRead: true } : {})
          const peer = yield* rawPeer(path)
          yield* ask(peer, 1, version)
          yield* ask(peer, 2, { _tag: "SetDeviceState", argsz: 16, state: "STOP_COPY", dataFd: 0xffff_ffff })
          const stream = yield* sim.stopCopyLength
          const asked = stream + 100
          const reply = yield* ask(peer, 3, { _tag: "MigDataRead", argsz: 8 + asked, size: asked })
          expect(errnoOf(reply)).toBe(0)
          // argsz and size give the real count either way; only the body's length differs.
          expect([u32At(reply, 0), u32At(reply, 4)]).toEqual([8 + stream, stream])
          expect(reply.payload.length).toBe(pad ? 8 + asked : 8 + stream)
          if (pad) expect(reply.payload.subarray(8 + stream).every((b) => b === 0)).toBe(true)
          // The final, empty read is padded too.
          const last = yield* ask(peer, 4, { _tag: "MigDataRead", argsz: 8 + 64, size: 64 })
          expect([u32At(last, 0), u32At(last, 4), last.payload.length]).toEqual([8, 0, pad ? 72 : 8])
        })
    )
  }

  it.live("the client reads a padded server's stream as the data alone", () =>
    Effect.gen(function* () {
      const { path, sim } = yield* served({ padMigDataRead: true })
      const client = yield* connect({ path, timeout: "2 seconds" })
      for (const state of ["RUNNING_P2P", "STOP", "STOP_COPY"] as const) yield* client.setState(state)
      const expected = yield* sim.stopCopyLength
      let total = 0
      for (;;) {
        const read = yield* client.read(1000)
        if (read._tag === "End") break
        if (read._tag === "Chunk") total += read.data.length
      }
      expect(total).toBe(expected)
    })
  )
})
