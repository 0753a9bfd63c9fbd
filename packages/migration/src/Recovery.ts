import {
  deviceEntry,
  type ErrorPolicy,
  emptyDeviceRecord,
  executePlanned,
  type FinalStates,
  type Group,
  type GroupRuntime,
  planTransition,
  putDevice,
  reportedStates,
  type TransitionOptions
} from "@lockstep/coordinator"
import { DeviceError } from "@lockstep/device"
import { type State, stateClass } from "@lockstep/fsm"
import { Effect, Exit } from "effect"
import { describeCause } from "./SessionFault.js"

/**
 * Where a failed side's recovery takes each device, by the ERROR policy (DESIGN §2, §3.6):
 *
 * - Each device goes `home`: RUNNING on a source (the group runs again), STOP on a destination
 *   (parked: nothing of the failed migration runs; a retry starts from there).
 * - A device in ERROR: under `reset`, it is reset (only a reset leaves ERROR) and then goes home;
 *   under `quarantine`, it is left in ERROR for diagnosis and is not planned at all (the kernel
 *   refuses any request from ERROR). Every other device is still planned.
 * - A quarantined device may still write into its targets (ERROR counts as initiating): none of
 *   them may stay halted, so one whose home is halted is reset and stays in RUNNING, bus
 *   mastering off, instead of going home.
 * - A device in RESUMING that is not home there is reset: a reset is the only way out.
 * - `resetEvery` (a destination): every device not quarantined is reset first, so that none of
 *   the failed migration's state runs or does DMA before it is parked; and if parking fails, the
 *   way back to RUNNING for a reset device is another reset, never an arc that would let it run.
 *
 * `required` is where each device must end for the recovery to be complete: home, RUNNING for a
 * guarded target, ERROR for a quarantined device.
 */
export interface RecoveryTargets {
  readonly quarantined: ReadonlyArray<string>
  /** Targets of a quarantined device kept out of the halted states. */
  readonly guarded: ReadonlyArray<string>
  /** Devices reset before anything moves. */
  readonly reset: ReadonlyArray<string>
  readonly required: Readonly<Record<string, State>>
}

/** The recovery's targets for `group` with its devices now in `current` (see {@link RecoveryTargets}). */
export const recoveryTargets = (
  group: Group,
  policy: ErrorPolicy,
  home: State,
  current: FinalStates,
  resetEvery: boolean
): RecoveryTargets => {
  const quarantined = group.devices.filter((d) => policy === "quarantine" && current[d.id] === "ERROR").map((d) => d.id)
  const isQuarantined = new Set(quarantined)
  const guarded = new Set<string>()
  if (stateClass(home) === "halted")
    for (const id of quarantined)
      for (const target of group.topology.targetsOf(id)) if (!isQuarantined.has(target)) guarded.add(target)
  const reset: Array<string> = []
  const required = emptyDeviceRecord<State>()
  for (const d of group.devices) {
    if (isQuarantined.has(d.id)) {
      putDevice(required, d.id, "ERROR")
      continue
    }
    const now = current[d.id]
    const mustReset = resetEvery || guarded.has(d.id) || now === "ERROR" || (now === "RESUMING" && home !== "RESUMING")
    if (mustReset) reset.push(d.id)
    putDevice(required, d.id, guarded.has(d.id) ? "RUNNING" : home)
  }
  return { quarantined, guarded: [...guarded], reset, required }
}

/** How a recovery ended. */
export interface Recovered {
  readonly states: FinalStates
  readonly required: Readonly<Record<string, State>>
  readonly quarantined: ReadonlyArray<string>
  /** Every device is where the policy requires. */
  readonly complete: boolean
  /** What went wrong on the way, as a sentence, if anything did (even when the end states are right). */
  readonly problem: string | undefined
}

/**
 * Takes a failed side's group where the policy requires (see {@link recoveryTargets}): reads
 * every device's real state, resets what must be reset, then plans every device that is not
 * quarantined from where it really is to its target, obeying the P2P rule (a rollback: an
 * exposure a device failing into ERROR already caused is accepted, and a reset device counts as
 * initiating nothing until its next arc). A refused reset is forgiven when the device already is
 * where it must end (a vfio-user server refuses DEVICE_RESET in STOP; such a device is parked).
 */
export const recoverGroup = (
  runtime: GroupRuntime,
  spec: {
    readonly policy: ErrorPolicy
    readonly home: State
    readonly resetEvery: boolean
    readonly resetTimeoutMs: number
    readonly transition: TransitionOptions
  }
): Effect.Effect<Recovered> =>
  Effect.gen(function* () {
    const before = yield* reportedStates(runtime)
    const targets = recoveryTargets(runtime.group, spec.policy, spec.home, before, spec.resetEvery)
    const resets = yield* Effect.forEach(
      targets.reset,
      (id) => {
        const device = runtime.devices.get(id)
        if (device === undefined) return Effect.succeed([id, Exit.void] as const)
        const timedOut = DeviceError.resetFailed({
          device: id,
          code: "ETIMEDOUT",
          reason: `no answer within ${spec.resetTimeoutMs} ms`
        })
        return Effect.map(
          Effect.exit(
            device.reset.pipe(
              Effect.timeoutOrElse({ duration: spec.resetTimeoutMs, orElse: () => Effect.fail(timedOut) })
            )
          ),
          (exit) => [id, exit] as const
        )
      },
      { concurrency: "unbounded" }
    )
    const afterResets = yield* reportedStates(runtime)
    const problems: Array<string> = []
    const resetOk: Array<string> = []
    for (const [id, exit] of resets) {
      if (Exit.isSuccess(exit)) resetOk.push(id)
      else if (afterResets[id] !== targets.required[id])
        problems.push(`the reset of ${id} failed: ${describeCause(exit.cause)}`)
    }
    const to = emptyDeviceRecord<State>()
    for (const d of runtime.group.devices) {
      const required = deviceEntry(targets.required, d.id)
      if (required !== undefined && !targets.quarantined.includes(d.id) && afterResets[d.id] !== "UNKNOWN")
        putDevice(to, d.id, required)
    }
    // Going home to a halted state (parking a destination), a device that was reset must never be
    // made to run: if the move fails, its rollback would take it back up to RUNNING through an arc
    // that lets it run again (with whatever it had loaded). A reset puts it back there, inert.
    const mover = stateClass(spec.home) === "halted" ? inert(runtime, new Set(resetOk)) : runtime
    const moved = yield* Effect.exit(
      executePlanned(
        mover,
        (group, from) =>
          planTransition(group, {
            from,
            to: Object.fromEntries(Object.entries(to).filter(([id]) => from[id] !== undefined)),
            allowUnsafeStart: true,
            busMasteringOff: resetOk.filter((id) => from[id] === "RUNNING")
          }),
        spec.transition
      )
    )
    if (Exit.isFailure(moved)) problems.push(describeCause(moved.cause))
    const states = yield* reportedStates(runtime)
    return {
      states,
      required: targets.required,
      quarantined: targets.quarantined,
      complete: runtime.group.devices.every((d) => states[d.id] === targets.required[d.id]),
      problem: problems.length === 0 ? undefined : problems.join("; ")
    }
  })

/** `runtime` with the devices in `reset` going back to RUNNING by a reset, never by an arc. */
const inert = (runtime: GroupRuntime, reset: ReadonlySet<string>): GroupRuntime => ({
  group: runtime.group,
  devices: new Map(
    [...runtime.devices].map(([id, device]) => [
      id,
      reset.has(id)
        ? { ...device, setState: (to: State) => (to === "RUNNING" ? device.reset : device.setState(to)) }
        : device
    ])
  )
})

/** Each device as it is: where a side nothing of which was touched must be. */
const asTheyAre = (states: FinalStates): Record<string, State> =>
  Object.fromEntries(Object.entries(states).flatMap(([id, s]) => (s === "UNKNOWN" ? [] : [[id, s] as const])))

/** A side that touched nothing before it failed: nothing to recover, its devices are as they were. */
export const untouched = (runtime: GroupRuntime): Effect.Effect<Recovered> =>
  Effect.map(reportedStates(runtime), (states) => ({
    states,
    required: asTheyAre(states),
    quarantined: [],
    complete: true,
    problem: undefined
  }))

/**
 * A side whose devices are left where they are (a source that must stay stopped, a destination
 * in doubt), to be judged against `home`; `problem` says why, if it is a failure.
 */
export const leftInPlace = (runtime: GroupRuntime, home: State, problem?: string): Effect.Effect<Recovered> =>
  Effect.map(reportedStates(runtime), (states) => ({
    states,
    required: Object.fromEntries(runtime.group.devices.map((d) => [d.id, home] as const)),
    quarantined: [],
    complete: runtime.group.devices.every((d) => states[d.id] === home),
    problem
  }))

/** The fields of a `MigrationFailed` that say how the recovery went. */
export const recoveryFields = (touched: boolean, r: Recovered) => ({
  touched,
  states: r.states,
  requiredStates: r.required,
  quarantined: r.quarantined,
  recovered: r.complete,
  recoveryProblem: r.problem
})
