import type { GroupRuntime } from "@lockstep/coordinator"
import type { Device } from "@lockstep/device"
import { BufferPool, type Control, type Frame, type Manifest } from "@lockstep/stream"
import { type Cause, Deferred, Effect, Exit, Fiber, Queue, Semaphore } from "effect"
import { carriedBy, deviceOnChannel } from "./Channels.js"
import type { EventSink } from "./Events.js"
import type { SessionFault } from "./SessionFault.js"

/** What a device's writer does next, in stream order. */
type LoadItem =
  /** `release`: gives `data`'s buffer back once the device has taken it (a copy of lent bytes). */
  | { readonly _tag: "Write"; readonly data: Uint8Array; readonly release?: (() => void) | undefined }
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

/**
 * The extra channels of a migration over several (see `Channels.ts` for the rule): channel 0 is
 * the plan's `nextFrame`, whose manifest names every device and ends those it does not carry at
 * once; each extra channel's manifest names the devices it carries, in group order.
 */
export interface LoadChannels {
  /** The next frame of channel 1, 2, …, past its manifest and `Joined`. */
  readonly extra: ReadonlyArray<Effect.Effect<Frame, SessionFault>>
  /** The fault for data of a device on a channel that does not carry it. */
  readonly stray: (got: string) => SessionFault
}

/** How to load a stream's device data into a group. */
export interface LoadPlan {
  readonly manifest: Manifest
  /** The local device of each manifest index. */
  readonly devices: ReadonlyArray<Device>
  /** The next frame of the stream (channel 0). */
  readonly nextFrame: Effect.Effect<Frame, SessionFault>
  /** The extra channels, read concurrently with channel 0. Default: none. */
  readonly channels?: LoadChannels | undefined
  /**
   * Whether the frames of `channel` lend their payloads (valid until its next frame: a
   * connection with recycled reads). Those are copied into pooled buffers, each given back once
   * its device has taken it (`Device.write` reads the bytes before it completes). Default: none.
   */
  readonly lends?: ((channel: number) => boolean) | undefined
  /**
   * What a control frame of `channel` means here (its device, if any, is by that channel's
   * manifest); fails for one that does not belong.
   */
  readonly onControl: (control: Control, channel: number) => Effect.Effect<ControlAction, SessionFault>
  /** Sends the acknowledgement of a device's initial data (by group manifest index). */
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
    const { devices, emit, now } = plan
    const totals: Array<LoadTotals> = devices.map(() => ({ precopyBytes: 0, stopCopyBytes: 0 }))
    const queues = yield* Effect.forEach(devices, () => Queue.bounded<LoadItem, Cause.Done>(plan.queueDepth))
    const writes = yield* Semaphore.make(Math.max(1, plan.concurrency))
    const failed = yield* Deferred.make<never, SessionFault>()
    let stopping = false
    let failure: Cause.Cause<SessionFault> | undefined

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
          if (item._tag === "Write") item.release?.()
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
    const n = (plan.channels?.extra.length ?? 0) + 1
    // Copies of lent payloads: at most a queue's worth per device, and one being written each.
    const pool = new BufferPool(lentCopyBytes, devices.length * (plan.queueDepth + 1))
    const read = (channel: number, nextFrame: Effect.Effect<Frame, SessionFault>) =>
      readChannel({ plan, channels: n, channel, nextFrame, totals, offer, pool })
    const reads = Effect.forEach(
      [plan.nextFrame, ...(plan.channels?.extra ?? [])],
      (nextFrame, channel) => read(channel, nextFrame),
      { concurrency: "unbounded", discard: true }
    )
    const loaded = yield* Effect.exit(Effect.raceFirst(reads, Deferred.await(failed)))
    if (Exit.isFailure(loaded)) stopping = true
    yield* Effect.forEach(queues, (q) => Queue.end(q), { discard: true })
    yield* Fiber.await(workers)
    if (Exit.isFailure(loaded)) return yield* Effect.failCause(loaded.cause)
    if (failure !== undefined) return yield* Effect.failCause(failure)
    return totals
  })

/** One channel's reading: where its frames come from, and where their device data goes. */
interface ChannelRead {
  readonly plan: LoadPlan
  /** How many channels the migration has. */
  readonly channels: number
  readonly channel: number
  readonly nextFrame: Effect.Effect<Frame, SessionFault>
  readonly totals: ReadonlyArray<LoadTotals>
  readonly offer: (device: number, item: LoadItem) => Effect.Effect<void>
  readonly pool: BufferPool
}

/** Size of the pooled copies of lent payloads: a frame's payload as a source writes it by default. */
const lentCopyBytes = 256 * 1024

/** A lent payload copied into a buffer of `pool` (or a fresh one, if larger), and how to give it back. */
const ownCopy = (
  payload: Uint8Array,
  pool: BufferPool
): { readonly data: Uint8Array; readonly release?: () => void } => {
  if (payload.length > pool.size) return { data: new Uint8Array(payload) }
  const buffer = pool.take()
  buffer.set(payload)
  return { data: buffer.subarray(0, payload.length), release: pool.releaser(buffer) }
}

/** Reads one channel until each device of its manifest has ended, feeding the devices' writers. */
const readChannel = (r: ChannelRead): Effect.Effect<void, SessionFault> =>
  Effect.gen(function* () {
    const { plan, channels, channel, totals, offer, pool } = r
    const lends = plan.lends?.(channel) === true
    // Channel 0's manifest names every device (it ends those it does not carry at once, with no data).
    const count = channel === 0 ? plan.devices.length : carriedBy(channel, channels, plan.devices.length).length
    let ended = 0
    // Each channel's own `SwitchoverBegun` makes what follows on it stop-copy data.
    let final = false
    while (ended < count) {
      const frame = yield* r.nextFrame
      if (frame._tag === "Control") {
        const action = yield* plan.onControl(frame, channel)
        const i = frame.device === undefined ? undefined : deviceOnChannel(frame.device, channel, channels)
        if (action === "switchover") final = true
        else if (action === "ack" && i !== undefined && i < plan.manifest.devices.length)
          yield* offer(i, { _tag: "Ack" })
        continue
      }
      if (frame._tag !== "Chunk" && frame._tag !== "DeviceEnd")
        // The decoder admits no second manifest and no stream end before every device has ended.
        return yield* Effect.die(new Error(`unexpected ${frame._tag} frame while loading`))
      const i = deviceOnChannel(frame.device, channel, channels)
      if (frame._tag === "DeviceEnd") ended += 1
      if (i === undefined) {
        if (frame._tag === "DeviceEnd" && frame.bytes === 0) continue
        const got = `data of device ${frame.device} on channel ${channel}, which does not carry it`
        return yield* plan.channels === undefined ? Effect.die(new Error(got)) : Effect.fail(plan.channels.stray(got))
      }
      if (frame._tag === "DeviceEnd") {
        yield* offer(i, { _tag: "End" })
        continue
      }
      const t = totals[i]
      if (t !== undefined) {
        if (final) t.stopCopyBytes += frame.payload.length
        else t.precopyBytes += frame.payload.length
      }
      yield* offer(
        i,
        lends ? { _tag: "Write", ...ownCopy(frame.payload, pool) } : { _tag: "Write", data: frame.payload }
      )
    }
  })

/** The local device of each of a checked manifest's devices, in manifest order. */
export const manifestDevices = (manifest: Manifest, runtime: GroupRuntime): ReadonlyArray<Device> =>
  manifest.devices.map((d) => {
    const device = runtime.devices.get(d.id)
    if (device === undefined) throw new RangeError(`checked manifest names ${d.id}, which the runtime lacks`)
    return device
  })
