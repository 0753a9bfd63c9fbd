import {
  type Device,
  DeviceError,
  DeviceErrorReason,
  type DeviceKind,
  type PrecopyInfo,
  type ReadResult
} from "@lockstep/device"
import type { Flags, State } from "@lockstep/fsm"
import { decodeGroup, type Group, type GroupRuntime } from "@lockstep/group"
import { Cause, Effect, Exit, Schema } from "effect"
import { type ErrorPolicy, type TransitionEvent, type TransitionReport, transition } from "./Executor.js"
import type { TransitionFailed, TransitionRefused } from "./ExecutorError.js"
import type { StateAssignment } from "./Planner.js"
import { beginPrecopy, enterStopCopy, type GroupStep, prepareResume, quiesce, resume, stop } from "./Steps.js"

/**
 * A device as a VMM that does not use Effect implements it: the `Device` port with Promises.
 * A rejection that is the port's typed error (a `DeviceError`, or one of its reasons such as `ArcFailed`, wrapped) is kept
 * as it is; any other rejection of `setState` becomes `ArcFailed` with the state read back.
 */
export interface PromiseDevice {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: Flags
  getState(): Promise<State>
  setState(to: State): Promise<void>
  read(maxBytes: number): Promise<ReadResult>
  /** Resolves once `data` has been read: Lockstep may reuse its buffer then. */
  write(data: Uint8Array): Promise<void>
  precopyInfo(): Promise<PrecopyInfo>
  stopCopyLength(): Promise<number>
  reset(): Promise<void>
  /** The pre-copy info v2 opt-in (REINIT); absent: declined. */
  enablePrecopyInfoV2?(): Promise<boolean>
  /** The device's P2P quiesce is a full stop (Intel xe). */
  readonly p2pQuiesceIsStop?: boolean
}

const isDeviceErrorReason = Schema.is(DeviceErrorReason)

/** The port's error a rejection is, if it is one: a `DeviceError`, or one of its reasons (wrapped). */
const deviceErrorOf = (u: unknown): DeviceError | undefined =>
  u instanceof DeviceError ? u : isDeviceErrorReason(u) ? new DeviceError({ reason: u }) : undefined

/** The device's pre-copy info v2 opt-in as the port's, when it has one. */
const optInOf = (
  device: PromiseDevice,
  call: (f: () => Promise<boolean>, orElse: (reason: string) => DeviceError) => Effect.Effect<boolean, DeviceError>,
  orElse: (reason: string) => DeviceError
): Pick<Device, "enablePrecopyInfoV2"> => {
  const optIn = device.enablePrecopyInfoV2
  return optIn === undefined ? {} : { enablePrecopyInfoV2: call(() => optIn.call(device), orElse) }
}

/** Adapts a Promise-based device to the `Device` port. */
export const fromPromiseDevice = (device: PromiseDevice): Device => {
  const call = <A>(f: () => Promise<A>, orElse: (reason: string) => DeviceError) =>
    Effect.tryPromise({
      try: f,
      catch: (u) => deviceErrorOf(u) ?? orElse(u instanceof Error ? u.message : String(u))
    })
  const unreachable = (operation: string) => (reason: string) =>
    DeviceError.unreachable({ device: device.id, operation, reason })
  return {
    id: device.id,
    kind: device.kind,
    flags: device.flags,
    getState: call(() => device.getState(), unreachable("getState")),
    setState: (to) =>
      Effect.gen(function* () {
        const from = yield* call(() => device.getState(), unreachable("getState"))
        yield* Effect.tryPromise({ try: () => device.setState(to), catch: (u) => u }).pipe(
          Effect.catch((u) => {
            const typed = deviceErrorOf(u)
            return typed !== undefined
              ? Effect.fail(typed)
              : Effect.flatMap(
                  Effect.orElseSucceed(
                    call(() => device.getState(), unreachable("getState")),
                    () => "ERROR" as const
                  ),
                  (stateAfter) =>
                    Effect.fail(
                      DeviceError.arcFailed({
                        device: device.id,
                        arc: { from, to },
                        code: "EIO",
                        reason: u instanceof Error ? u.message : String(u),
                        stateAfter
                      })
                    )
                )
          })
        )
      }),
    read: (maxBytes) => call(() => device.read(maxBytes), unreachable("read")),
    write: (data) => call(() => device.write(data), unreachable("write")),
    precopyInfo: call(() => device.precopyInfo(), unreachable("precopyInfo")),
    stopCopyLength: call(() => device.stopCopyLength(), unreachable("stopCopyLength")),
    reset: call(() => device.reset(), unreachable("reset")),
    ...optInOf(device, call, unreachable("enablePrecopyInfoV2")),
    ...(device.p2pQuiesceIsStop === undefined ? {} : { p2pQuiesceIsStop: device.p2pQuiesceIsStop })
  }
}

/** Options of the Promise facade. */
export interface LockstepGroupOptions {
  readonly errorPolicy?: ErrorPolicy
  readonly concurrency?: number
  readonly arcTimeoutMs?: number
  readonly onEvent?: (event: TransitionEvent) => void
}

/**
 * The coordinator for VMMs that do not use Effect: every method is one group transaction and
 * returns a Promise that rejects with `TransitionRefused` or `TransitionFailed` (the same
 * typed errors as the Effect API, with `_tag`, `message`, the failed device and arc, and every
 * device's final state).
 */
export class LockstepGroup {
  readonly #runtime: GroupRuntime
  readonly #options: LockstepGroupOptions

  /**
   * Decodes a group document (JSON value) and builds the coordinator over `devices`. Rejects
   * with a `GroupError` (reason `InvalidGroup`, which lists every `path: reason`).
   */
  static async fromDocument(
    document: unknown,
    devices: Iterable<PromiseDevice>,
    options: LockstepGroupOptions = {}
  ): Promise<LockstepGroup> {
    const exit = await Effect.runPromiseExit(decodeGroup(document))
    if (Exit.isFailure(exit)) throw Cause.squash(exit.cause)
    return new LockstepGroup(exit.value, devices, options)
  }

  constructor(group: Group, devices: Iterable<PromiseDevice>, options: LockstepGroupOptions = {}) {
    this.#runtime = { group, devices: new Map([...devices].map((d) => [d.id, fromPromiseDevice(d)])) }
    this.#options = options
  }

  async #run(effect: Effect.Effect<TransitionReport, TransitionRefused | TransitionFailed>): Promise<TransitionReport> {
    const exit = await Effect.runPromiseExit(effect)
    if (Exit.isSuccess(exit)) return exit.value
    throw Cause.squash(exit.cause)
  }

  #step(s: GroupStep): Promise<TransitionReport> {
    return this.#run(s(this.#runtime, this.#options))
  }

  /** Moves the group to `target` (one state for all, or per device). */
  transition(target: StateAssignment): Promise<TransitionReport> {
    return this.#run(transition(this.#runtime, target, this.#options))
  }
  /** See `quiesce`. */
  quiesce(): Promise<TransitionReport> {
    return this.#step(quiesce)
  }
  /** See `stop`. */
  stop(): Promise<TransitionReport> {
    return this.#step(stop)
  }
  /** See `beginPrecopy`. */
  beginPrecopy(): Promise<TransitionReport> {
    return this.#step(beginPrecopy)
  }
  /** See `enterStopCopy`. */
  enterStopCopy(): Promise<TransitionReport> {
    return this.#step(enterStopCopy)
  }
  /** See `prepareResume`. */
  prepareResume(): Promise<TransitionReport> {
    return this.#step(prepareResume)
  }
  /** See `resume`. */
  resume(): Promise<TransitionReport> {
    return this.#step(resume)
  }
}
