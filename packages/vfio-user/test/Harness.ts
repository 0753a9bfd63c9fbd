import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { makeSimDevice, type SimDevice, type SimDeviceConfig } from "@lockstep/sim"
import {
  type ClientOptions,
  connect,
  decodeRequest,
  encodeReply,
  type Frame,
  FrameDecoder,
  limitsFor,
  type Request,
  serve,
  type VfioUserDevice
} from "@lockstep/vfio-user"
import { type Cause, Effect, Queue, Result, type Scope } from "effect"

/** A fresh directory for sockets, removed with the scope. */
export const tempDir: Effect.Effect<string, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "lockstep-vfio-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** A simulated device served over vfio-user in `dir`, and a client connected to it. */
export const servedSim = (
  dir: string,
  id: string,
  config: SimDeviceConfig,
  client: Partial<ClientOptions> = {}
): Effect.Effect<{ sim: SimDevice; client: VfioUserDevice; path: string }, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const sim = yield* makeSimDevice(id, config)
    const path = join(dir, `${id}.sock`)
    yield* serve({ path, device: sim })
    const device = yield* connect({ path, id, timeout: "2 seconds", ...client })
    return { sim, client: device, path }
  })

const limits = limitsFor(1 << 20)

/** A raw socket speaking to a server, for sending hand-made bytes. */
export interface RawPeer {
  readonly send: (bytes: Uint8Array) => Effect.Effect<void>
  /** The next whole message, or `"closed"` once the peer has closed the connection. */
  readonly next: Effect.Effect<Frame | "closed">
  /** Closes the connection from this side. */
  readonly close: Effect.Effect<void>
}

/** Connects a raw socket to `path`, closed with the scope. */
export const rawPeer = (path: string): Effect.Effect<RawPeer, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const inbox = yield* Queue.make<Frame, Cause.Done>()
    const socket = yield* Effect.acquireRelease(
      Effect.callback<net.Socket, Error>((resume) => {
        const s = net.createConnection({ path })
        s.once("error", (e) => resume(Effect.fail(e)))
        s.once("connect", () => resume(Effect.succeed(s)))
      }),
      (s) => Effect.sync(() => s.destroy())
    )
    const decoder = new FrameDecoder(limits.maxFrameSize)
    socket.on("data", (chunk: Buffer) => {
      for (const frame of decoder.push(chunk).frames) Queue.offerUnsafe(inbox, frame)
    })
    socket.on("error", () => Queue.endUnsafe(inbox))
    socket.on("close", () => Queue.endUnsafe(inbox))
    return {
      send: (bytes) => Effect.sync(() => void socket.write(bytes)),
      next: Queue.take(inbox).pipe(
        Effect.catchTag("Done", () => Effect.succeed("closed" as const)),
        Effect.timeout("2 seconds"),
        Effect.orDie
      ),
      close: Effect.sync(() => void socket.destroy())
    }
  })

/**
 * What a fake server does with one command: send bytes, close the connection, stay silent,
 * or send bytes and then close.
 */
export type Action = Uint8Array | "close" | "silent" | { readonly endWith: Uint8Array }

/** A fake server's behaviour: the action for each command it receives. */
export type Script = (request: Request, frame: Frame, socket: net.Socket) => Action

/** The replies of a well-behaved server to the negotiation a client does on connect. */
export const negotiation = (request: Request, frame: Frame): Uint8Array | undefined => {
  const id = frame.header.msgId
  switch (request._tag) {
    case "Version":
      return encodeReply(id, { _tag: "Version", major: 0, minor: 2, capabilities: { maxDataXferSize: 1 << 20 } })
    case "DeviceGetInfo":
      return encodeReply(id, { _tag: "DeviceGetInfo", argsz: 16, flags: 3, numRegions: 9, numIrqs: 0 })
    case "GetMigrationFlags":
      return encodeReply(id, { _tag: "GetMigrationFlags", flags: 7n })
    default:
      return undefined
  }
}

/**
 * A hand-written vfio-user server on `path` that answers each command as `script` says,
 * closed with the scope. Commands it cannot decode close the connection.
 */
export const fakeServer = (path: string, script: Script): Effect.Effect<void, Error, Scope.Scope> => {
  const sockets = new Set<net.Socket>()
  return Effect.acquireRelease(
    Effect.callback<net.Server, Error>((resume) => {
      const server = net.createServer((socket) => {
        sockets.add(socket)
        const decoder = new FrameDecoder(limits.maxFrameSize)
        socket.on("error", () => socket.destroy())
        socket.on("data", (chunk: Buffer) => {
          for (const frame of decoder.push(chunk).frames) {
            const decoded = decodeRequest(frame, limits)
            const action = Result.isSuccess(decoded) ? script(decoded.success, frame, socket) : "close"
            if (action === "close") socket.destroy()
            else if (action instanceof Uint8Array) socket.write(action)
            else if (action !== "silent") socket.end(action.endWith)
          }
        })
      })
      server.once("error", (e) => resume(Effect.fail(e)))
      server.listen(path, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.asVoid)
}
