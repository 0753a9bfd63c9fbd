import * as net from "node:net"
import { Data, Effect, Result, Schema, type Scope } from "effect"
import { onJsonLines } from "./JsonLines.js"

/**
 * The control protocol of a host: how the fleet asks a host's process (the one that holds its
 * devices, such as `lockstep fleet hosts`) what it holds, and has it prepare or drop a VM's
 * devices. One JSON line per request on a UNIX socket, one JSON line in reply:
 *
 *   → {"op":"inventory"}                       ← {"ok":true,"result":{"host":"host-a","vms":[…]}}
 *   → {"op":"provision","vm":"vm01","document":{…}}   ← {"ok":true,"result":{"created":true}}
 *   → {"op":"release","vm":"vm01"}             ← {"ok":false,"error":"vm01 runs on host-b; …"}
 *
 * `watch` keeps the connection and streams one line per device event (tests use it to crash
 * the orchestrator at chosen points). The devices themselves are reached over vfio-user, at
 * sockets beside the control socket (`socketPath`).
 */

const StateName = Schema.String

/** One device of a VM on a host, as the host sees it. */
export const DeviceView = Schema.Struct({
  id: Schema.String,
  state: StateName,
  /** The arc in flight, as `FROM>TO`. */
  inFlight: Schema.optionalKey(Schema.String)
})
export type DeviceView = typeof DeviceView.Type

/** A VM's devices on a host: its own (`home`, where the fleet file puts it) or an incoming shell. */
export const VmView = Schema.Struct({
  vm: Schema.String,
  role: Schema.Literals(["home", "shell"]),
  devices: Schema.Array(DeviceView),
  /** P2P invariant violations the VM's DMA fabric recorded. */
  violations: Schema.Number,
  /** Intervals in which P2P writes landed in a possibly halted device. */
  corruptingWrites: Schema.Number,
  /** P2P writes landed so far. */
  writes: Schema.Number,
  /** The first violation, described, if any. */
  firstViolation: Schema.optionalKey(Schema.String)
})
export type VmView = typeof VmView.Type

/** Everything a host holds. */
export const HostInventory = Schema.Struct({ host: Schema.String, vms: Schema.Array(VmView) })
export type HostInventory = typeof HostInventory.Type

/** A device event streamed by `watch`. */
export const WatchEvent = Schema.Struct({
  host: Schema.String,
  vm: Schema.String,
  role: Schema.Literals(["home", "shell"]),
  device: Schema.String,
  /** `ArcStarted`, `ArcCompleted`, `ArcFailed`, `ArcInterrupted`, `Reset`. */
  event: Schema.String,
  state: StateName,
  /** For arc events: the arc's target state. */
  to: Schema.optionalKey(StateName)
})
export type WatchEvent = typeof WatchEvent.Type

/** A request of the control protocol. */
export const ControlRequest = Schema.Union([
  Schema.Struct({ op: Schema.Literal("inventory") }),
  Schema.Struct({ op: Schema.Literal("provision"), vm: Schema.String, document: Schema.Unknown }),
  Schema.Struct({ op: Schema.Literal("release"), vm: Schema.String }),
  Schema.Struct({ op: Schema.Literal("digests"), vm: Schema.String }),
  Schema.Struct({ op: Schema.Literal("watch") }),
  Schema.Struct({ op: Schema.Literal("stop") })
])
export type ControlRequest = typeof ControlRequest.Type

const Reply = Schema.Union([
  Schema.Struct({ ok: Schema.Literal(true), result: Schema.Unknown }),
  Schema.Struct({ ok: Schema.Literal(false), error: Schema.String })
])

/** A control request failed: the host did not answer, answered nonsense, or refused. */
export class HostControlFailed extends Data.TaggedError("HostControlFailed")<{
  readonly endpoint: string
  readonly op: string
  readonly reason: string
  /** The host answered and refused (as opposed to not answering). */
  readonly refused: boolean
}> {
  override get message(): string {
    return `${this.op} at ${this.endpoint}: ${this.reason}`
  }
}

/** Where a VM's device is served on a host whose control socket is in `hostDir`. */
export const socketPath = (hostDir: string, vm: string, device: string): string => `${hostDir}/${vm}.${device}`

/** The control socket of a host whose files are in `hostDir`. */
export const controlPath = (hostDir: string): string => `${hostDir}/control`

const decodeReply = Schema.decodeUnknownResult(Reply)

/**
 * Sends one request on a fresh connection and reads the one line that answers it, within
 * `timeoutMs`.
 */
export const call = (
  endpoint: string,
  request: ControlRequest,
  timeoutMs = 5_000
): Effect.Effect<unknown, HostControlFailed> =>
  Effect.callback<unknown, HostControlFailed>((resume) => {
    const failed = (reason: string, refused = false) =>
      resume(Effect.fail(new HostControlFailed({ endpoint, op: request.op, reason, refused })))
    const socket = net.createConnection(endpoint)
    let buffer = ""
    let done = false
    const finish = (effect: () => void) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      effect()
    }
    const timer = setTimeout(() => finish(() => failed(`no answer within ${timeoutMs} ms`)), timeoutMs)
    socket.setEncoding("utf8")
    socket.on("connect", () => socket.write(`${JSON.stringify(request)}\n`))
    socket.on("data", (chunk: string) => {
      buffer += chunk
      const end = buffer.indexOf("\n")
      if (end < 0) return
      const parsed = Result.try(() => JSON.parse(buffer.slice(0, end)) as unknown)
      const reply = Result.isSuccess(parsed) ? decodeReply(parsed.success) : undefined
      finish(() => {
        if (reply === undefined || Result.isFailure(reply)) failed("the answer is not a control reply")
        else if (reply.success.ok) resume(Effect.succeed(reply.success.result))
        else failed(reply.success.error, true)
      })
    })
    socket.on("error", (error: NodeJS.ErrnoException) =>
      finish(() =>
        failed(error.code === "ENOENT" || error.code === "ECONNREFUSED" ? "nothing listens there" : error.message)
      )
    )
    socket.on("close", () => finish(() => failed("the connection closed before an answer")))
    return Effect.sync(() => finish(() => {}))
  })

/** `call`, with the answer decoded by `schema`. */
export const request = <A, I>(
  endpoint: string,
  req: ControlRequest,
  schema: Schema.Codec<A, I>,
  timeoutMs?: number
): Effect.Effect<A, HostControlFailed> =>
  Effect.flatMap(call(endpoint, req, timeoutMs), (result) =>
    Effect.mapError(
      Schema.decodeUnknownEffect(schema)(result),
      (e) => new HostControlFailed({ endpoint, op: req.op, reason: `unexpected answer: ${e.message}`, refused: false })
    )
  )

/** What a host holds. */
export const inventory = (endpoint: string, timeoutMs?: number): Effect.Effect<HostInventory, HostControlFailed> =>
  request(endpoint, { op: "inventory" }, HostInventory, timeoutMs)

/**
 * Streams the host's device events to `onEvent` until the scope closes (or the host goes
 * away: the returned effect then ends).
 */
export const watch = (
  endpoint: string,
  onEvent: (event: WatchEvent) => void
): Effect.Effect<void, HostControlFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = yield* Effect.acquireRelease(
      Effect.callback<net.Socket, HostControlFailed>((resume) => {
        const s = net.createConnection(endpoint)
        s.once("connect", () => resume(Effect.succeed(s)))
        s.once("error", (e) =>
          resume(Effect.fail(new HostControlFailed({ endpoint, op: "watch", reason: e.message, refused: false })))
        )
      }),
      (s) => Effect.sync(() => s.destroy())
    )
    const decode = Schema.decodeUnknownResult(WatchEvent)
    onJsonLines(socket, (parsed) => {
      if (Result.isFailure(parsed)) return
      const event = decode(parsed.success)
      if (Result.isSuccess(event)) onEvent(event.success)
    })
    socket.write(`${JSON.stringify({ op: "watch" })}\n`)
  })
