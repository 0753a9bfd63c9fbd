import { rmSync } from "node:fs"
import * as net from "node:net"
import type { DeviceError } from "@lockstep/device"
import { isArc, type State, States } from "@lockstep/fsm"
import type { SimDevice } from "@lockstep/sim"
import { Deferred, Effect, type Scope } from "effect"

/*
 * A vfio-user server that behaves the way libvfio-user (the reference C server library) and its
 * sample server do where they differ from the spec, written for these tests from the spec's
 * message layouts and the deviations observed (see /work/shared/vfio-user-notes.md), with its
 * own byte handling: it shares no code with @lockstep/vfio-user, so that the client is judged
 * by a peer it did not shape.
 *
 * Deviations it reproduces:
 * - MIG_DATA_READ replies are padded to 8 + the size asked; argsz and size carry the real count
 *   (the final, empty read too).
 * - DEVICE_FEATURE GET MIG_DATA_SIZE answers EINVAL.
 * - DEVICE_RESET is refused in STOP/STOP_COPY (EINVAL); where accepted it leaves the migration
 *   state as it was.
 * - GET_REGION_INFO answers the 32 bytes asked while argsz says the full size (80 for a region
 *   with capabilities).
 * - It serves one connection, then exits (the socket is gone).
 * - With pre-copy off it does not advertise PRE_COPY and refuses migration data outside STOP_COPY.
 * - It wants exact byte counts: a message whose lengths disagree gets EINVAL.
 * It moves a simulated device (one legal arc per SET, as its device callbacks would) so that a
 * migration through it can be verified byte for byte.
 */

const Header = 16
const Reply = 1
const ErrorFlag = 0x20

const EINVAL = 22
const EBUSY = 16
const ENOTSUP = 95

const Cmd = {
  VERSION: 1,
  DEVICE_GET_INFO: 4,
  GET_REGION_INFO: 5,
  GET_IRQ_INFO: 7,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DEVICE_RESET: 13,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18
} as const

const FeatureGet = 1 << 16
const FeatureSet = 1 << 17
const FeatureProbe = 1 << 18

/** The kernel's state numbers (vfio_device_mig_state). */
const stateNumber: Record<State, number> = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7
}
const stateOf = (n: number): State | undefined => States.find((s) => stateNumber[s] === n)

/** What the server answers: a payload, or an errno. */
type Answer = { readonly payload: Uint8Array } | { readonly errno: number }

const le = (size: number) => {
  const bytes = new Uint8Array(size)
  return { bytes, view: new DataView(bytes.buffer) }
}

const errnoOf = (error: DeviceError): number => (error.reason._tag === "ArcRejected" ? EINVAL : 5)

/** Options of {@link libvfioUserLike}. */
export interface LibvfioUserLikeOptions {
  readonly path: string
  readonly device: SimDevice
  /** Advertise and serve pre-copy (PRE_COPY). Off: the sample server's `--no-precopy` behaviour. */
  readonly precopy: boolean
  /** PCI vendor and device id in config space. */
  readonly ids?: { readonly vendor: number; readonly device: number }
}

/** A running server: what it saw, and whether it has exited. */
export interface LibvfioUserLike {
  /** Command numbers received, in order. */
  readonly commands: Array<number>
  /** Resolves once the server has served its one connection and closed its socket. */
  readonly exited: Deferred.Deferred<void>
  /** Every MIG_DATA_READ answered: the size asked, the data size, and the reply body's length. */
  readonly paddedReads: Array<{ readonly asked: number; readonly size: number; readonly body: number }>
}

const versionJson = '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"migration":{"pgsize":4096}}}'

/** Serves `options.device` on `options.path` for one connection, until it closes or the scope does. */
export const libvfioUserLike = (options: LibvfioUserLikeOptions): Effect.Effect<LibvfioUserLike, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const { device } = options
    const flags = options.precopy ? 1 | 4 : 1
    const config = new Uint8Array(256)
    const configView = new DataView(config.buffer)
    configView.setUint16(0, options.ids?.vendor ?? 0x4e58, true)
    configView.setUint16(2, options.ids?.device ?? 0x0001, true)
    const exited = yield* Deferred.make<void>()
    const state: LibvfioUserLike = { commands: [], exited, paddedReads: [] }
    const commands = state.commands
    const run = Effect.runPromise

    const feature = (payload: Uint8Array): Promise<Answer> => {
      if (payload.length < 8) return Promise.resolve({ errno: EINVAL })
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
      const argsz = view.getUint32(0, true)
      const featureFlags = view.getUint32(4, true)
      const index = featureFlags & 0xffff
      const ops = featureFlags & ~0xffff
      if ((ops & FeatureProbe) !== 0) {
        return Promise.resolve(index === 1 || index === 2 ? { payload: payload.slice() } : { errno: EINVAL })
      }
      const reply16 = (data: (view: DataView) => void): Answer => {
        const { bytes, view: out } = le(16)
        out.setUint32(0, 16, true)
        out.setUint32(4, featureFlags, true)
        data(out)
        return { payload: bytes }
      }
      if (ops === FeatureGet && index === 1 && argsz >= 16)
        return Promise.resolve(reply16((out) => out.setBigUint64(8, BigInt(flags), true)))
      if (ops === FeatureGet && index === 2 && argsz >= 16)
        return run(device.getState).then((s) =>
          reply16((out) => {
            out.setUint32(8, stateNumber[s], true)
            out.setUint32(12, 0xffff_ffff, true)
          })
        )
      if (ops === FeatureSet && index === 2 && payload.length === 16) {
        const to = stateOf(view.getUint32(8, true))
        if (to === undefined) return Promise.resolve({ errno: EINVAL })
        return run(
          Effect.gen(function* () {
            const from = yield* device.getState
            // One legal arc of the advertised flags; the combination walk is the client's.
            if (from !== to && !isArc(flags, from, to)) return { errno: EINVAL } satisfies Answer
            if (from !== to) {
              const moved = yield* Effect.result(device.setState(to))
              if (moved._tag === "Failure") return { errno: errnoOf(moved.failure) } satisfies Answer
            }
            return reply16((out) => {
              out.setUint32(8, stateNumber[to], true)
              out.setUint32(12, 0xffff_ffff, true)
            })
          })
        )
      }
      // MIG_DATA_SIZE (9) and everything else: not implemented.
      return Promise.resolve({ errno: EINVAL })
    }

    const migDataRead = (payload: Uint8Array): Promise<Answer> => {
      if (payload.length !== 8) return Promise.resolve({ errno: EINVAL })
      const view = new DataView(payload.buffer, payload.byteOffset, 8)
      const argsz = view.getUint32(0, true)
      const size = view.getUint32(4, true)
      if (argsz < 8 + size || size > 1_048_576) return Promise.resolve({ errno: EINVAL })
      return run(
        Effect.gen(function* () {
          const s = yield* device.getState
          const allowed = s === "STOP_COPY" || (options.precopy && s === "PRE_COPY")
          if (!allowed) return { errno: EINVAL } satisfies Answer
          const read = size === 0 ? undefined : yield* Effect.result(device.read(size))
          if (read?._tag === "Failure") return { errno: errnoOf(read.failure) } satisfies Answer
          const data = read?.success._tag === "Chunk" ? read.success.data : new Uint8Array(0)
          // Padded to 8 + the size asked; argsz and size give the real count.
          const { bytes, view: out } = le(8 + size)
          out.setUint32(0, 8 + data.length, true)
          out.setUint32(4, data.length, true)
          bytes.set(data, 8)
          state.paddedReads.push({ asked: size, size: data.length, body: bytes.length })
          return { payload: bytes } satisfies Answer
        })
      )
    }

    const migDataWrite = (payload: Uint8Array): Promise<Answer> => {
      if (payload.length < 8) return Promise.resolve({ errno: EINVAL })
      const view = new DataView(payload.buffer, payload.byteOffset, 8)
      const argsz = view.getUint32(0, true)
      const size = view.getUint32(4, true)
      // Exact byte counts only.
      if (payload.length !== 8 + size || argsz !== 8 + size) return Promise.resolve({ errno: EINVAL })
      return run(
        Effect.gen(function* () {
          if ((yield* device.getState) !== "RESUMING") return { errno: EINVAL } satisfies Answer
          const written = yield* Effect.result(device.write(payload.slice(8)))
          return written._tag === "Failure"
            ? ({ errno: errnoOf(written.failure) } satisfies Answer)
            : ({ payload: new Uint8Array(0) } satisfies Answer)
        })
      )
    }

    const answer = (command: number, payload: Uint8Array): Promise<Answer> => {
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength)
      switch (command) {
        case Cmd.VERSION: {
          const json = new TextEncoder().encode(`${versionJson}\0`)
          const { bytes, view: out } = le(4 + json.length)
          out.setUint16(0, 0, true)
          out.setUint16(2, 2, true)
          bytes.set(json, 4)
          return Promise.resolve({ payload: bytes })
        }
        case Cmd.DEVICE_GET_INFO: {
          if (payload.length !== 16) return Promise.resolve({ errno: EINVAL })
          const { bytes, view: out } = le(16)
          out.setUint32(0, 16, true)
          out.setUint32(4, 1 | 2, true)
          out.setUint32(8, 9, true)
          out.setUint32(12, 5, true)
          return Promise.resolve({ payload: bytes })
        }
        case Cmd.GET_REGION_INFO: {
          if (payload.length !== 32) return Promise.resolve({ errno: EINVAL })
          const index = view.getUint32(8, true)
          if (index >= 9) return Promise.resolve({ errno: EINVAL })
          const { bytes, view: out } = le(32)
          // BAR0 has a sparse-mmap capability the client did not ask room for: argsz says 80.
          out.setUint32(0, index === 0 ? 80 : 32, true)
          out.setUint32(4, index === 7 ? 3 : index === 0 ? 3 | 8 : 0, true)
          out.setUint32(8, index, true)
          out.setUint32(12, index === 0 ? 32 : 0, true)
          out.setBigUint64(16, index === 7 ? 256n : index === 0 ? 4096n : 0n, true)
          return Promise.resolve({ payload: bytes })
        }
        case Cmd.GET_IRQ_INFO: {
          if (payload.length !== 16) return Promise.resolve({ errno: EINVAL })
          const index = view.getUint32(8, true)
          if (index >= 5) return Promise.resolve({ errno: EINVAL })
          const { bytes, view: out } = le(16)
          out.setUint32(0, 16, true)
          out.setUint32(8, index, true)
          return Promise.resolve({ payload: bytes })
        }
        case Cmd.REGION_READ: {
          if (payload.length !== 16) return Promise.resolve({ errno: EINVAL })
          const offset = Number(view.getBigUint64(0, true))
          const region = view.getUint32(8, true)
          const count = view.getUint32(12, true)
          if (region !== 7 || offset + count > config.length) return Promise.resolve({ errno: EINVAL })
          const bytes = new Uint8Array(16 + count)
          bytes.set(payload, 0)
          bytes.set(config.subarray(offset, offset + count), 16)
          return Promise.resolve({ payload: bytes })
        }
        case Cmd.DEVICE_RESET:
          if (payload.length !== 0) return Promise.resolve({ errno: EINVAL })
          return run(device.getState).then((s) =>
            // Refused while stopped; otherwise accepted, the migration state left alone.
            s === "STOP" || s === "STOP_COPY" ? { errno: EINVAL } : { payload: new Uint8Array(0) }
          )
        case Cmd.DEVICE_FEATURE:
          return feature(payload)
        case Cmd.MIG_DATA_READ:
          return migDataRead(payload)
        case Cmd.MIG_DATA_WRITE:
          return migDataWrite(payload)
        default:
          return Promise.resolve({ errno: ENOTSUP })
      }
    }

    const reply = (msgId: number, command: number, a: Answer): Uint8Array => {
      const payload = "payload" in a ? a.payload : new Uint8Array(0)
      const { bytes, view } = le(Header + payload.length)
      view.setUint16(0, msgId, true)
      view.setUint16(2, command, true)
      view.setUint32(4, bytes.length, true)
      view.setUint32(8, "errno" in a ? Reply | ErrorFlag : Reply, true)
      view.setUint32(12, "errno" in a ? a.errno : 0, true)
      bytes.set(payload, Header)
      return bytes
    }

    let connection: net.Socket | undefined
    const server = net.createServer((socket) => {
      if (connection !== undefined) {
        socket.destroy()
        return
      }
      connection = socket
      // One connection only: the listener closes as soon as it is taken, as the sample server's does.
      server.close()
      let buffered = Buffer.alloc(0)
      let busy = Promise.resolve()
      socket.on("error", () => socket.destroy())
      socket.on("close", () => {
        rmSync(options.path, { force: true })
        Deferred.doneUnsafe(exited, Effect.void)
      })
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk])
        while (buffered.length >= Header) {
          const size = buffered.readUInt32LE(4)
          if (size < Header || size > Header + 1_048_576 + 4096) {
            socket.destroy()
            return
          }
          if (buffered.length < size) break
          const message = new Uint8Array(buffered.subarray(0, size))
          buffered = buffered.subarray(size)
          const view = new DataView(message.buffer)
          const msgId = view.getUint16(0, true)
          const command = view.getUint16(2, true)
          commands.push(command)
          // Commands are answered one at a time, in order.
          busy = busy.then(() =>
            answer(command, message.subarray(Header)).then(
              (a) => void (socket.writable && socket.write(reply(msgId, command, a))),
              () => void (socket.writable && socket.write(reply(msgId, command, { errno: EBUSY })))
            )
          )
        }
      })
    })
    yield* Effect.acquireRelease(
      Effect.callback<void, Error>((resume) => {
        server.once("error", (e) => resume(Effect.fail(e)))
        server.listen(options.path, () => resume(Effect.void))
      }),
      () =>
        Effect.sync(() => {
          connection?.destroy()
          server.close()
          rmSync(options.path, { force: true })
        })
    )
    return state
  })
