import type { GroupRuntime } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import type { Control, Frame, Manifest } from "@lockstep/stream"
import { type Cause, Deferred, Effect, Exit, Fiber, Queue, Semaphore } from "effect"
import type { EventSink } from "./Events.js"
import type { SessionFault } from "./SessionFault.js"

/** What a device's writer does next, in stream order. */
type LoadItem =
  | { readonly _tag: "Write"; readonly data: Uint8Array }
  | { readonly _tag: "Ack" }
  | { readonly _tag: "End" }

/** What a control frame met while loading asks for. */
export type ControlAction =
  /** Acknowledge the initial data of the frame's device once everything before it is written. */
  | "ack"
  /** The source has begun its switchover: the data from here on is final. */
  | "switchover"
  /** Nothing for the devices: the control frame was dealt with (a probe answered). */
  | "handled"

/** Bytes loaded into one device. */
export interface LoadTotals {
  precopyBytes: number
  stopCopyBytes: number
}

/** How to load a stream's device data into a group. */
export interface LoadPlan {
  readonly manifest: Manifest
  /** The local device of each manifest index. */
  readonly devices: ReadonlyArray<Device>
  readonly nextFrame: Effect.Effect<Frame, SessionFault>
  /** What a control frame means here; fails for one that does not belong. */
  readonly onControl: (control: Control) => Effect.Effect<ControlAction, SessionFault>
  /** Sends the acknowledgement of a device's initial data. */
  readonly acknowledge: (device: number) => Effect.Effect<void, SessionFault>
  /** Turns a device error into the session's fault. */
  readonly located: <A, E extends SessionFault["cause"]>(effect: Effect.Effect<A, E>) => Effect.Effect<A, SessionFault>
  /** Devices written at once. */
  readonly concurrency: number
  /** Items each device's queue holds before the reader waits. */
  readonly queueDepth: number
  readonly emit: EventSink
  readonly now: () => number
}

/**
 * Loads device data until every device's end marker: one writer fiber per device, fed through
 * a bounded queue, so devices load concurrently and a slow device stops the reading (and so the
 * channel), never grows a buffer. A writer is never interrupted: on a failure the others stop
 * between items, so an acknowledgement being written always goes out whole.
 */
export const loadDevices = (plan: LoadPlan): Effect.Effect<ReadonlyArray<LoadTotals>, SessionFault> =>
  Effect.gen(function* () {
    const { devices, manifest, emit, now } = plan
    const totals: Array<LoadTotals> = devices.map(() => ({ precopyBytes: 0, stopCopyBytes: 0 }))
    const queues = yield* Effect.forEach(devices, () => Queue.bounded<LoadItem, Cause.Done>(plan.queueDepth))
    const writes = yield* Semaphore.make(Math.max(1, plan.concurrency))
    const failed = yield* Deferred.make<never, SessionFault>()
    let stopping = false
    let failure: Cause.Cause<SessionFault> | undefined
    let final = false

    const worker = (i: number): Effect.Effect<void> =>
      Effect.gen(function* () {
        const device = devices[i]
        const queue = queues[i]
        if (device === undefined || queue === undefined) return
        for (;;) {
          // An ended queue answers Done once it is empty: the end of this writer's work.
          const item = yield* Queue.take(queue).pipe(Effect.catch(() => Effect.succeed(undefined)))
          if (item === undefined || stopping) return
          if (item._tag === "End") {
            const t = totals[i]
            const bytes = t === undefined ? 0 : t.precopyBytes + t.stopCopyBytes
            emit({ _tag: "DeviceDrained", side: "destination", device: device.id, bytes, at: now() })
            return
          }
          const done = yield* Effect.exit(
            item._tag === "Write"
              ? plan.located(Semaphore.withPermit(writes, device.write(item.data)))
              : plan.acknowledge(i)
          )
          if (Exit.isFailure(done)) {
            stopping = true
            failure ??= done.cause
            yield* Deferred.failCause(failed, done.cause)
            return
          }
          if (item._tag === "Ack")
            emit({ _tag: "InitialDataAcknowledged", side: "destination", device: device.id, at: now() })
        }
      })
    const workers = yield* Effect.forkChild(
      Effect.forEach(
        devices.map((_, i) => i),
        worker,
        { concurrency: "unbounded", discard: true }
      )
    )
    const offer = (i: number, item: LoadItem): Effect.Effect<void> => {
      const queue = queues[i]
      return queue === undefined ? Effect.void : Effect.asVoid(Queue.offer(queue, item))
    }
    const read: Effect.Effect<void, SessionFault> = Effect.gen(function* () {
      let ended = 0
      while (ended < devices.length) {
        const frame = yield* plan.nextFrame
        if (frame._tag === "Chunk") {
          const t = totals[frame.device]
          if (t !== undefined) {
            if (final) t.stopCopyBytes += frame.payload.length
            else t.precopyBytes += frame.payload.length
          }
          yield* offer(frame.device, { _tag: "Write", data: frame.payload })
        } else if (frame._tag === "DeviceEnd") {
          ended += 1
          yield* offer(frame.device, { _tag: "End" })
        } else if (frame._tag === "Control") {
          const action = yield* plan.onControl(frame)
          if (action === "switchover") final = true
          else if (action === "ack" && frame.device !== undefined && frame.device < manifest.devices.length)
            yield* offer(frame.device, { _tag: "Ack" })
        } else {
          // The decoder admits no second manifest and no stream end before every device has ended.
          return yield* Effect.die(new Error(`unexpected ${frame._tag} frame while loading`))
        }
      }
    })
    const loaded = yield* Effect.exit(Effect.raceFirst(read, Deferred.await(failed)))
    if (Exit.isFailure(loaded)) stopping = true
    yield* Effect.forEach(queues, (q) => Queue.end(q), { discard: true })
    yield* Fiber.await(workers)
    if (Exit.isFailure(loaded)) return yield* Effect.failCause(loaded.cause)
    if (failure !== undefined) return yield* Effect.failCause(failure)
    return totals
  })

/** The local device of each of a checked manifest's devices, in manifest order. */
export const manifestDevices = (manifest: Manifest, runtime: GroupRuntime): ReadonlyArray<Device> =>
  manifest.devices.map((d) => {
    const device = runtime.devices.get(d.id)
    if (device === undefined) throw new RangeError(`checked manifest names ${d.id}, which the runtime lacks`)
    return device
  })
