import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import type { State } from "@lockstep/fsm"
import { makeSimDevice } from "@lockstep/sim"
import {
  Command,
  connect,
  encodeReply,
  encodeRequest,
  Feature,
  type Frame,
  HeaderFlag,
  type Request,
  serve
} from "@lockstep/vfio-user"
import { type Duration, Effect } from "effect"
import { type Action, fakeServer, negotiation, type RawPeer, rawPeer, type Script, tempDir } from "./Harness.js"

/** A hand-made header with any size. */
const header = (o: {
  readonly msgId: number
  readonly command: number
  readonly size: number
  readonly flags?: number
}) => {
  const out = new Uint8Array(16)
  const view = new DataView(out.buffer)
  view.setUint16(0, o.msgId, true)
  view.setUint16(2, o.command, true)
  view.setUint32(4, o.size, true)
  view.setUint32(8, o.flags ?? HeaderFlag.TYPE_REPLY, true)
  return out
}

/** A GET MIG_DEVICE_STATE reply with a raw state number. */
const stateReply = (msgId: number, state: number) => {
  const out = new Uint8Array(32)
  out.set(header({ msgId, command: Command.DEVICE_FEATURE, size: 32 }))
  const view = new DataView(out.buffer)
  view.setUint32(16, 16, true)
  view.setUint32(20, (1 << 16) | Feature.MIG_DEVICE_STATE, true)
  view.setUint32(24, state, true)
  view.setUint32(28, 0xffff_ffff, true)
  return out
}

const getState = (msgId: number, state: State) =>
  encodeReply(msgId, { _tag: "GetDeviceState", state, dataFd: 0xffff_ffff })

/** A fake server that negotiates properly, then does what `rest` says. */
const afterNegotiation =
  (rest: (request: Request, frame: Frame, socket: Parameters<Script>[2]) => Action): Script =>
  (request, frame, socket) =>
    negotiation(request, frame) ?? rest(request, frame, socket)

const withFake = (
  script: Script,
  options: { readonly timeout?: Duration.Input; readonly stopCopyLengthEstimate?: number } = {}
) =>
  Effect.gen(function* () {
    const dir = yield* tempDir
    const path = join(dir, "fake.sock")
    yield* fakeServer(path, script)
    return yield* connect({ path, id: "fake", timeout: options.timeout ?? "2 seconds", ...options }).pipe(Effect.flip)
  })

const connected = (
  script: Script,
  options: { readonly timeout?: Duration.Input; readonly stopCopyLengthEstimate?: number } = {}
) =>
  Effect.gen(function* () {
    const dir = yield* tempDir
    const path = join(dir, "fake.sock")
    yield* fakeServer(path, script)
    return yield* connect({ path, id: "fake", timeout: options.timeout ?? "2 seconds", ...options })
  })

describe("vfio-user client against malformed replies", () => {
  it.live("a header smaller than itself", () =>
    Effect.gen(function* () {
      const error = yield* withFake((_, frame) => header({ msgId: frame.header.msgId, command: 1, size: 3 }))
      expect(error).toMatchObject({
        _tag: "ProtocolError",
        reason: { _tag: "FrameSizeInvalid", command: "VERSION", field: "size", value: 3 }
      })
    })
  )

  it.live("an oversized reply, refused from its header", () =>
    Effect.gen(function* () {
      const error = yield* withFake((_, frame) => header({ msgId: frame.header.msgId, command: 1, size: 0x7fff_ffff }))
      expect(error).toMatchObject({ _tag: "ProtocolError", reason: { _tag: "FrameSizeInvalid", value: 0x7fff_ffff } })
    })
  )

  it.live("a truncated reply, then the end of the stream", () =>
    Effect.gen(function* () {
      const error = yield* withFake((request, frame) => ({
        endWith: (negotiation(request, frame) ?? new Uint8Array(0)).subarray(0, 10)
      }))
      expect(error).toMatchObject({
        _tag: "ProtocolError",
        reason: { _tag: "TruncatedFrame", value: 16, received: 10 }
      })
    })
  )

  it.live("garbage bytes", () =>
    Effect.gen(function* () {
      const garbage = new Uint8Array(64).map((_, i) => (i * 37 + 11) & 0xff)
      const error = yield* withFake(() => garbage)
      expect(error._tag).toBe("ProtocolError")
      if (error._tag === "ProtocolError") {
        expect(["FrameSizeInvalid", "FieldInvalid", "UnknownCommand", "ReplyMismatch"]).toContain(error.reason._tag)
      }
    })
  )

  it.live("a silent server", () =>
    Effect.gen(function* () {
      const error = yield* withFake(() => "silent", { timeout: "150 millis" })
      expect(error).toMatchObject({ _tag: "ReplyTimeout", command: "VERSION", timeoutMillis: 150 })
    })
  )

  it.live("a server that closes on the first command", () =>
    Effect.gen(function* () {
      const error = yield* withFake(() => "close")
      expect(error).toMatchObject({ _tag: "ConnectionLost", command: "VERSION" })
    })
  )

  it.live("a reply with another msg_id", () =>
    Effect.gen(function* () {
      const error = yield* withFake((_, frame) =>
        encodeReply(frame.header.msgId + 1, { _tag: "Version", major: 0, minor: 2, capabilities: {} })
      )
      expect(error).toMatchObject({
        _tag: "ProtocolError",
        reason: { _tag: "ReplyMismatch", field: "msg_id", value: 1, expected: 0 }
      })
    })
  )

  it.live("a reply to another command", () =>
    Effect.gen(function* () {
      const error = yield* withFake((_, frame) => encodeReply(frame.header.msgId, { _tag: "DeviceReset" }))
      expect(error).toMatchObject({
        _tag: "ProtocolError",
        reason: {
          _tag: "ReplyMismatch",
          field: "command",
          value: "DEVICE_RESET",
          expected: "VERSION"
        }
      })
    })
  )

  it.live("a twin socket the client did not ask for", () =>
    Effect.gen(function* () {
      const error = yield* withFake((_, frame) =>
        encodeReply(frame.header.msgId, {
          _tag: "Version",
          major: 0,
          minor: 2,
          capabilities: { twinSocket: { supported: true, fdIndex: 0 } }
        })
      )
      expect(error).toMatchObject({
        _tag: "ProtocolError",
        reason: { _tag: "FieldInvalid", field: "capabilities.twin_socket.supported" }
      })
    })
  )

  it.live("an out-of-range state: DeviceUnreachable, and the connection is closed", () =>
    Effect.gen(function* () {
      const device = yield* connected(afterNegotiation((_, frame) => stateReply(frame.header.msgId, 9)))
      const error = yield* Effect.flip(device.getState)
      expect(error).toMatchObject({ reason: { _tag: "DeviceUnreachable", device: "fake", operation: "getState" } })
      expect(error.message).toMatch(/device_state = 9/)
      expect(yield* Effect.flip(device.reset)).toMatchObject({
        reason: { _tag: "DeviceUnreachable", operation: "reset" }
      })
    })
  )

  it.live("a message nobody asked for closes the connection", () =>
    Effect.gen(function* () {
      const device = yield* connected(
        afterNegotiation((_, frame) => {
          const reply = getState(frame.header.msgId, "RUNNING")
          const extra = getState(frame.header.msgId + 100, "STOP")
          const both = new Uint8Array(reply.length + extra.length)
          both.set(reply)
          both.set(extra, reply.length)
          return both
        })
      )
      expect(yield* device.getState).toBe("RUNNING")
      yield* Effect.sleep("50 millis")
      const error = yield* Effect.flip(device.getState)
      expect(error).toMatchObject({ reason: { _tag: "DeviceUnreachable" } })
      expect(error.message).toMatch(/protocol error/)
    })
  )

  it.live("more migration data than asked for", () =>
    Effect.gen(function* () {
      const device = yield* connected(
        afterNegotiation((request, frame) =>
          request._tag === "MigDataRead"
            ? encodeReply(frame.header.msgId, {
                _tag: "MigDataRead",
                data: new Uint8Array(request.size + 1),
                padding: 0
              })
            : getState(frame.header.msgId, "STOP_COPY")
        )
      )
      expect(yield* Effect.flip(device.read(100))).toMatchObject({
        reason: { _tag: "DeviceUnreachable", operation: "read" }
      })
    })
  )

  it.live("a late reply to an abandoned request is dropped; the next request succeeds", () =>
    Effect.gen(function* () {
      let calls = 0
      const device = yield* connected(
        afterNegotiation((_, frame, socket) => {
          calls++
          if (calls > 1) return getState(frame.header.msgId, "STOP")
          setTimeout(() => socket.write(getState(frame.header.msgId, "RUNNING")), 250)
          return "silent"
        }),
        { timeout: "100 millis" }
      )
      expect(yield* Effect.flip(device.getState)).toMatchObject({
        reason: { _tag: "DeviceUnreachable", operation: "getState" }
      })
      yield* Effect.sleep("300 millis")
      expect(yield* device.getState).toBe("STOP")
    })
  )

  it.live("an error reply to a SET: ArcFailed with the state read back", () =>
    Effect.gen(function* () {
      let state: State = "RUNNING_P2P"
      const device = yield* connected(
        afterNegotiation((request, frame) => {
          if (request._tag === "SetDeviceState") {
            state = "ERROR"
            return encodeReply(frame.header.msgId, { _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 5 })
          }
          return getState(frame.header.msgId, state)
        })
      )
      expect(yield* Effect.flip(device.setState("STOP"))).toMatchObject({
        reason: {
          _tag: "ArcFailed",
          device: "fake",
          arc: { from: "RUNNING_P2P", to: "STOP" },
          code: "EIO",
          stateAfter: "ERROR"
        }
      })
    })
  )

  it.live("a server that closes on a SET: DeviceUnreachable", () =>
    Effect.gen(function* () {
      const device = yield* connected(
        afterNegotiation((request, frame) =>
          request._tag === "SetDeviceState" ? "close" : getState(frame.header.msgId, "RUNNING")
        )
      )
      expect(yield* Effect.flip(device.setState("RUNNING_P2P"))).toMatchObject({
        reason: {
          _tag: "DeviceUnreachable",
          operation: "setState"
        }
      })
    })
  )

  it.live("MIG_DATA_SIZE refused with EINVAL: EOPNOTSUPP, the configured estimate exposed beside it", () =>
    Effect.gen(function* () {
      const script = afterNegotiation((request, frame) =>
        request._tag === "GetStopCopySize"
          ? encodeReply(frame.header.msgId, { _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 22 })
          : getState(frame.header.msgId, "RUNNING")
      )
      const estimated = yield* connected(script, { stopCopyLengthEstimate: 12_345 })
      expect(estimated.stopCopyLengthEstimate).toBe(12_345)
      const plain = yield* connected(script)
      expect(plain.stopCopyLengthEstimate).toBeUndefined()
      for (const device of [estimated, plain]) {
        const error = yield* Effect.flip(device.stopCopyLength)
        expect(error).toMatchObject({
          reason: {
            _tag: "SessionFailed",
            operation: "stopCopyLength",
            code: "EOPNOTSUPP",
            state: "RUNNING"
          }
        })
        // The refusal names the server, the command and what was expected of it.
        expect(error.message).toContain("fake.sock refused DEVICE_FEATURE GET MIG_DATA_SIZE")
        expect(error.message).toContain("with EINVAL; expected the length of the device's STOP_COPY data")
      }
    })
  )

  it.live("MIG_DATA_SIZE refused with another code: that code", () =>
    Effect.gen(function* () {
      const device = yield* connected(
        afterNegotiation((request, frame) =>
          request._tag === "GetStopCopySize"
            ? encodeReply(frame.header.msgId, { _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 5 })
            : getState(frame.header.msgId, "PRE_COPY")
        )
      )
      expect(yield* Effect.flip(device.stopCopyLength)).toMatchObject({ reason: { code: "EIO", state: "PRE_COPY" } })
    })
  )

  /**
   * A server that resets like libvfio-user: EINVAL in STOP/STOP_COPY; elsewhere accepted with
   * the migration state left as it was. `sets` records the states the client then asked for.
   */
  const resettingLikeLibvfioUser = (start: State) => {
    let state = start
    const sets: Array<State> = []
    const script = afterNegotiation((request, frame) => {
      const id = frame.header.msgId
      switch (request._tag) {
        case "DeviceReset":
          return state === "STOP" || state === "STOP_COPY"
            ? encodeReply(id, { _tag: "ErrorReply", command: Command.DEVICE_RESET, errno: 22 })
            : encodeReply(id, { _tag: "DeviceReset" })
        case "SetDeviceState":
          sets.push(request.state)
          state = request.state
          return encodeReply(id, { _tag: "SetDeviceState", state, dataFd: 0xffff_ffff })
        default:
          return getState(id, state)
      }
    })
    return { script, sets }
  }

  it.live("a reset the server accepts but that leaves PRE_COPY: the client closes the session to RUNNING", () =>
    Effect.gen(function* () {
      const server = resettingLikeLibvfioUser("PRE_COPY")
      const device = yield* connected(server.script)
      yield* device.reset
      expect(server.sets).toEqual(["RUNNING"])
      expect(yield* device.getState).toBe("RUNNING")
    })
  )

  it.live("a reset accepted in RUNNING is done; nothing more is sent", () =>
    Effect.gen(function* () {
      const server = resettingLikeLibvfioUser("RUNNING")
      const device = yield* connected(server.script)
      yield* device.reset
      expect(server.sets).toEqual([])
    })
  )

  it.live("a reset accepted that leaves RESUMING: ResetFailed naming the state, nothing walked", () =>
    Effect.gen(function* () {
      const server = resettingLikeLibvfioUser("RESUMING")
      const device = yield* connected(server.script)
      const error = yield* Effect.flip(device.reset)
      expect(error).toMatchObject({ reason: { _tag: "ResetFailed", device: "fake" } })
      expect(error.message).toMatch(
        /fake\.sock accepted DEVICE_RESET but the device is in RESUMING, expected RUNNING .*it was left there/
      )
      expect(server.sets).toEqual([])
    })
  )

  for (const start of ["STOP", "STOP_COPY"] as const)
    it.live(
      `a reset refused in ${start}: ResetFailed naming the server, the command, the expectation and the state`,
      () =>
        Effect.gen(function* () {
          const server = resettingLikeLibvfioUser(start)
          const device = yield* connected(server.script)
          const error = yield* Effect.flip(device.reset)
          expect(error).toMatchObject({ reason: { _tag: "ResetFailed", code: "EINVAL" } })
          expect(error.message).toMatch(
            new RegExp(
              `fake\\.sock refused DEVICE_RESET \\(msg_id \\d+\\) with EINVAL; expected the device reset to RUNNING; the device is still in ${start}$`
            )
          )
          expect(server.sets).toEqual([])
        })
    )

  it.live("a server without the migration feature: flags 0", () =>
    Effect.gen(function* () {
      const device = yield* connected((request, frame) =>
        request._tag === "GetMigrationFlags"
          ? encodeReply(frame.header.msgId, { _tag: "ErrorReply", command: Command.DEVICE_FEATURE, errno: 25 })
          : (negotiation(request, frame) ?? "close")
      )
      expect(device.flags).toBe(0)
      expect(device.server.migrationError).toMatchObject({ code: "ENOTTY" })
    })
  )
})

/** Sends one request and returns the next message (or `"closed"`). */
const ask = (peer: RawPeer, msgId: number, request: Request, flags?: { readonly noReply?: boolean }) =>
  peer.send(encodeRequest(msgId, request, flags)).pipe(Effect.andThen(peer.next))

const version: Request = { _tag: "Version", major: 0, minor: 2, capabilities: {} }

const errnoOf = (reply: Frame | "closed") =>
  reply === "closed" ? "closed" : (reply.header.flags & HeaderFlag.ERROR) !== 0 ? reply.header.error : 0

describe("vfio-user server against malformed commands", () => {
  const served = Effect.gen(function* () {
    const dir = yield* tempDir
    const path = join(dir, "sim.sock")
    const sim = yield* makeSimDevice("sim", { arcLatencyMs: 0, dirtyBytesPerSecond: 0, stateSize: 8192 })
    yield* serve({ path, device: sim })
    return { path, sim }
  })

  it.live("answers bad commands with errno replies and keeps serving", () =>
    Effect.gen(function* () {
      const { path } = yield* served
      const peer = yield* rawPeer(path)
      expect(errnoOf(yield* ask(peer, 1, { _tag: "DeviceReset" }))).toBe(22)
      expect(errnoOf(yield* ask(peer, 2, version))).toBe(0)
      expect(errnoOf(yield* ask(peer, 3, version))).toBe(22)
      yield* peer.send(header({ msgId: 4, command: 99, size: 16, flags: 0 }))
      expect(errnoOf(yield* peer.next)).toBe(22)
      yield* peer.send(header({ msgId: 5, command: Command.DMA_MAP, size: 16, flags: 0 }))
      expect(errnoOf(yield* peer.next)).toBe(95)
      const resetWithPayload = new Uint8Array(20)
      resetWithPayload.set(header({ msgId: 6, command: Command.DEVICE_RESET, size: 20, flags: 0 }))
      yield* peer.send(resetWithPayload)
      const reply = yield* peer.next
      expect(reply === "closed" ? undefined : reply.header).toMatchObject({ msgId: 6, command: 13, error: 22 })
      const probe = { _tag: "ProbeFeature", argsz: 8, get: false, set: true, data: new Uint8Array(0) } as const
      expect(errnoOf(yield* ask(peer, 7, { ...probe, feature: 2, get: true }))).toBe(0)
      expect(errnoOf(yield* ask(peer, 8, { ...probe, feature: 6 }))).toBe(95)
      expect(errnoOf(yield* ask(peer, 9, { _tag: "SetDeviceState", argsz: 16, state: "ERROR", dataFd: 0 }))).toBe(22)
      expect(errnoOf(yield* ask(peer, 10, { _tag: "MigDataRead", argsz: 108, size: 100 }))).toBe(22)
      expect(errnoOf(yield* ask(peer, 11, { _tag: "DeviceReset" }))).toBe(0)
    })
  )

  it.live("walks a combination transition for a client that asks for a distant state", () =>
    Effect.gen(function* () {
      const { path, sim } = yield* served
      const peer = yield* rawPeer(path)
      yield* ask(peer, 1, version)
      const reply = yield* ask(peer, 2, { _tag: "SetDeviceState", argsz: 16, state: "STOP_COPY", dataFd: 0xffff_ffff })
      expect(errnoOf(reply)).toBe(0)
      expect(yield* sim.getState).toBe("STOP_COPY")
    })
  )

  it.live("honours no-reply", () =>
    Effect.gen(function* () {
      const { path, sim } = yield* served
      const peer = yield* rawPeer(path)
      yield* ask(peer, 1, version)
      yield* ask(peer, 2, { _tag: "SetDeviceState", argsz: 16, state: "STOP", dataFd: 0xffff_ffff })
      yield* peer.send(encodeRequest(3, { _tag: "DeviceReset" }, { noReply: true }))
      const next = yield* ask(peer, 4, { _tag: "GetDeviceState", argsz: 16 })
      expect(next === "closed" ? undefined : next.header.msgId).toBe(4)
      expect(yield* sim.getState).toBe("RUNNING")
    })
  )

  const fatal: ReadonlyArray<readonly [string, Uint8Array]> = [
    ["an oversized header", header({ msgId: 1, command: 1, size: 0x7fff_ffff, flags: 0 })],
    ["a header smaller than itself", header({ msgId: 1, command: 1, size: 4, flags: 0 })],
    ["a reply sent to the server", header({ msgId: 1, command: 13, size: 16, flags: HeaderFlag.TYPE_REPLY })]
  ]
  for (const [name, bytes] of fatal) {
    it.live(`closes the connection on ${name}, and serves the next one`, () =>
      Effect.gen(function* () {
        const { path } = yield* served
        const bad = yield* rawPeer(path)
        yield* bad.send(bytes)
        expect(yield* bad.next).toBe("closed")
        const good = yield* rawPeer(path)
        expect(errnoOf(yield* ask(good, 1, version))).toBe(0)
      })
    )
  }

  it.live("closes a connection that breaks framing without disturbing another one's reply", () =>
    Effect.gen(function* () {
      const { path } = yield* served
      const first = yield* rawPeer(path)
      const second = yield* rawPeer(path)
      yield* second.send(encodeRequest(1, version))
      expect(errnoOf(yield* ask(first, 1, version))).toBe(0)
      expect(errnoOf(yield* ask(first, 2, { _tag: "GetDeviceState", argsz: 16 }))).toBe(0)
      yield* first.send(header({ msgId: 3, command: 1, size: 3, flags: 0 }))
      expect(yield* first.next).toBe("closed")
      expect(errnoOf(yield* second.next)).toBe(0)
    })
  )
})
