/**
 * The destination host of figure 4, run as a worker thread so that it has a core of its own,
 * as it would on its own machine. It receives raw bytes, or the framed stream (decoded and
 * dropped, or written into its simulated devices, which then validate), and reports back.
 */
import * as net from "node:net"
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks"
import { parentPort, workerData } from "node:worker_threads"
import { makeSimDevice, type SimDevice } from "@lockstep/sim"
import { FrameReader, makeDecoder, TcpTransport, type Transport, type TransportError } from "@lockstep/stream"
import { Effect, Option, Queue, Result, type Scope } from "effect"
import type { Command, DestinationSetup, Report } from "./StreamProtocol.js"
import { walkTo } from "./Walk.js"

const port = parentPort
if (port === null) throw new Error("StreamDestination runs as a worker thread")
const setup = workerData as DestinationSetup
const tell = (report: Report) => port.postMessage(report)

/** What a plain connection counted: every byte (raw), or the payload bytes of a valid stream (bare). */
type Counted = { readonly bytes: number; readonly problem: string | undefined }

/**
 * The stream's decoder alone, fed in the socket's own events: payload bytes counted, the first
 * format error kept, and the stream required to end with its stream end frame.
 */
const bareDecoder = () => {
  const decoder = makeDecoder()
  let bytes = 0
  let problem: string | undefined
  const eat = (chunk: Uint8Array) => {
    if (problem !== undefined) return
    decoder.push(chunk)
    for (;;) {
      const result = decoder.next()
      if (Result.isFailure(result)) {
        problem = result.failure.message
        return
      }
      const frame = result.success
      if (frame === undefined) break
      if (frame._tag === "Chunk") bytes += frame.payload.length
    }
  }
  const counted = (): Counted => ({
    bytes,
    problem: problem ?? (decoder.complete ? undefined : "the stream ended before its stream end frame")
  })
  return { eat, counted }
}

/**
 * Dials the source and counts raw bytes read through `onread` into one reused 1 MiB buffer:
 * the raw copy without Node's fresh buffer per socket read.
 */
const dialRaw = (dialPort: number): Promise<Counted> =>
  new Promise((done) => {
    let bytes = 0
    const socket = net.connect({
      host: "127.0.0.1",
      port: dialPort,
      onread: {
        buffer: Buffer.allocUnsafe(1024 * 1024),
        callback: (n: number) => {
          bytes += n
          return true
        }
      }
    })
    socket.on("end", () => {
      socket.end()
      done({ bytes, problem: undefined })
    })
    socket.on("error", (error) => done({ bytes: 0, problem: error.message }))
  })

/**
 * A plain socket server: one connection per run, reported in order. Raw, it counts the bytes it
 * receives; bare (`decoding()` when the connection arrives), it decodes them in the 'data' event
 * with the stream's decoder alone and counts the payload bytes.
 */
const plainServer = (
  decoding: () => boolean
): Effect.Effect<{ readonly port: number; readonly next: () => Promise<Counted> }> =>
  Effect.callback((resume) => {
    const received: Array<Counted> = []
    const waiting: Array<(counted: Counted) => void> = []
    const server = net.createServer((socket) => {
      let raw = 0
      const bare = decoding() ? bareDecoder() : undefined
      socket.on("data", (chunk: Buffer) => {
        if (bare === undefined) raw += chunk.length
        else bare.eat(chunk)
      })
      socket.on("end", () => {
        socket.end()
        const counted = bare === undefined ? { bytes: raw, problem: undefined } : bare.counted()
        const waiter = waiting.shift()
        if (waiter === undefined) received.push(counted)
        else waiter(counted)
      })
    })
    const next = () =>
      new Promise<Counted>((done) => {
        const counted = received.shift()
        if (counted === undefined) waiting.push(done)
        else done(counted)
      })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.unref()
      resume(Effect.succeed({ port: typeof address === "object" && address !== null ? address.port : 0, next }))
    })
  })

/**
 * One framed stream over `channels` connections, each from accept to its end, decoded
 * concurrently; the payload is dropped or written into `devices` (a channel's device indices
 * are those of its own manifest, mapped to the devices by id).
 */
const receiveStream = (
  listener: TcpTransport.Listener,
  devices: ReadonlyArray<SimDevice> | undefined,
  channels: number
) =>
  Effect.gen(function* () {
    const received = yield* Effect.forEach(
      Array.from({ length: channels }),
      () => receiveChannel(listener.accept, devices),
      {
        concurrency: "unbounded"
      }
    )
    // RESUMING → STOP checks every page and the trailer of each device's saved state.
    if (devices !== undefined) yield* Effect.forEach(devices, (d) => d.setState("STOP"), { discard: true })
    return received.reduce((a, b) => a + b, 0)
  })

/** One connection (accepted, or dialled) from its manifest to its end. */
const receiveChannel = (
  open: Effect.Effect<Transport, TransportError, Scope.Scope>,
  devices: ReadonlyArray<SimDevice> | undefined
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const transport = yield* open
      const reader = yield* FrameReader.make(transport)
      let bytes = 0
      let mine: ReadonlyArray<SimDevice | undefined> = []
      for (;;) {
        const next = yield* reader.next
        if (Option.isNone(next)) break
        const frame = next.value
        if (frame._tag === "Manifest") mine = frame.devices.map((d) => devices?.find((device) => device.id === d.id))
        if (frame._tag !== "Chunk") continue
        bytes += frame.payload.length
        const device = mine[frame.device]
        if (device !== undefined) yield* device.write(frame.payload)
      }
      return bytes
    })
  )

/**
 * Counts this thread's full (mark-compact) collections and their pauses. `take` answers those
 * since the last `take`, including entries not yet delivered to the observer.
 */
const majorCollections = () => {
  let count = 0
  let ms = 0
  const add = (entries: ReadonlyArray<PerformanceEntry>) => {
    for (const entry of entries) {
      // A 'gc' entry's detail says which collection it was (its typings omit it).
      const detail: unknown = "detail" in entry ? entry.detail : undefined
      if (
        typeof detail === "object" &&
        detail !== null &&
        "kind" in detail &&
        detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR
      ) {
        count += 1
        ms += entry.duration
      }
    }
  }
  const observer = new PerformanceObserver((list) => add(list.getEntries()))
  observer.observe({ entryTypes: ["gc"] })
  const take = () => {
    add(observer.takeRecords())
    const taken = { majorGcs: count, majorGcMs: ms }
    count = 0
    ms = 0
    return taken
  }
  return { take }
}

const main = Effect.gen(function* () {
  const collections = majorCollections()
  const devices: Array<SimDevice> = []
  for (const id of setup.deviceIds) {
    devices.push(
      yield* makeSimDevice(id, {
        arcLatencyMs: 0,
        stateSize: setup.deviceStateBytes,
        pageSize: setup.pageSize,
        seed: 99
      })
    )
  }
  const commands = yield* Queue.unbounded<Command>()
  port.on("message", (command: Command) => Queue.offerUnsafe(commands, command))
  const listener = yield* TcpTransport.listen({})
  let bare = false
  const plain = yield* plainServer(() => bare)
  tell({ _tag: "Ready", streamPort: listener.port, rawPort: plain.port })

  /** The bytes a plain connection counted, or its problem as the run's failure. */
  const countedBy = (counting: () => Promise<Counted>): Effect.Effect<number, string> =>
    Effect.flatMap(Effect.promise(counting), ({ bytes, problem }) =>
      problem === undefined ? Effect.succeed(bytes) : Effect.fail(problem)
    )
  const receive = (command: Extract<Command, { _tag: "Arm" }>): Effect.Effect<number, unknown> => {
    const { receiving, channels } = command
    switch (receiving) {
      case "rawDialled":
        return countedBy(() => dialRaw(command.dialPort ?? 0))
      case "dialled":
        return receiveChannel(
          TcpTransport.connect({ host: "127.0.0.1", port: command.dialPort ?? 0, recycledReads: true }),
          undefined
        )
      case "raw":
      case "bare":
        return countedBy(plain.next)
      case "decode":
        return receiveStream(listener, undefined, channels)
      case "resume":
        return receiveStream(listener, devices, channels)
    }
  }
  for (;;) {
    const command = yield* Queue.take(commands)
    if (command._tag === "Close") return
    if (command.receiving === "resume") yield* Effect.forEach(devices, (d) => walkTo(d, "RESUMING"), { discard: true })
    bare = command.receiving === "bare"
    const receiving = receive(command)
    const armed = performance.eventLoopUtilization()
    collections.take()
    tell({ _tag: "Armed" })
    const outcome = yield* Effect.result(receiving)
    const busyMs = performance.eventLoopUtilization(armed).active
    const gcs = collections.take()
    tell(
      outcome._tag === "Success"
        ? { _tag: "Received", bytes: outcome.success, valid: true, problem: undefined, busyMs, ...gcs }
        : { _tag: "Received", bytes: 0, valid: false, problem: String(outcome.failure), busyMs, ...gcs }
    )
  }
})

Effect.runPromise(Effect.scoped(main)).then(
  () => port.close(),
  (error: unknown) => {
    tell({ _tag: "Received", bytes: 0, valid: false, problem: String(error), busyMs: 0, majorGcs: 0, majorGcMs: 0 })
    port.close()
  }
)
