import type { Arc, Flags, State } from "@lockstep/fsm"
import type { Effect } from "effect"
import type { DeviceError } from "./DeviceError.js"

/** Device kinds. `pci` devices may do P2P; `mdev` cannot touch P2P pages; `ccw` and `ap` have no P2P. */
export type DeviceKind = "pci" | "mdev" | "ccw" | "ap"

/** Every device kind. */
export const DeviceKinds: ReadonlyArray<DeviceKind> = ["pci", "mdev", "ccw", "ap"]

/** Whether a device of this kind can ever be an end of a P2P edge. */
export const kindMayDoP2P = (kind: DeviceKind): boolean => kind === "pci"

/** What one read of a data session returned. */
export type ReadResult =
  /** Device state bytes, in order. */
  | { readonly _tag: "Chunk"; readonly data: Uint8Array }
  /** PRE_COPY only: nothing to read for now (initial and dirty bytes are both 0); read again later. */
  | { readonly _tag: "NoData" }
  /** STOP_COPY only: the final state has been read completely. */
  | { readonly _tag: "End" }

/** Pre-copy progress of a PRE_COPY / PRE_COPY_P2P saving session (`VFIO_MIG_GET_PRECOPY_INFO`). */
export interface PrecopyInfo {
  /** Bytes of the initial state not read yet; starts non-zero and only shrinks. */
  readonly initialBytes: number
  /** Bytes dirtied since they were read; may grow or shrink. */
  readonly dirtyBytes: number
  /**
   * `VFIO_PRECOPY_INFO_REINIT`: new initial data is on the stream, `initialBytes` counts it
   * afresh and `dirtyBytes` restarts from 0. Only a device that took the
   * `enablePrecopyInfoV2` opt-in reports it; absent means false.
   */
  readonly reinit?: boolean
}

/**
 * The port through which the coordinator drives one device. Every backend implements it:
 * simulated devices, vfio-user devices, and (later) Linux VFIO character devices.
 *
 * Rules every implementation keeps:
 * - `getState` asks the device; nothing is cached as truth.
 * - `setState` performs exactly one legal arc of the device's flag set from its current state.
 *   Anything else fails with `ArcRejected` and changes nothing. Combination transitions are
 *   walked by the caller, so the caller controls interleaving across a group.
 * - A failed arc fails with `ArcFailed`, which carries the state read back after the failure
 *   (the original state, one along the path, or ERROR).
 * - `read` is valid in a saving state (PRE_COPY, PRE_COPY_P2P, STOP_COPY), `write` only in
 *   RESUMING, `precopyInfo` only in PRE_COPY / PRE_COPY_P2P. `stopCopyLength` in any state.
 * - `reset` returns the device to RUNNING and closes any data session.
 * - `stopCopyLength` fails with code `EOPNOTSUPP` when the device cannot tell it at all (some
 *   vfio-user servers lack MIG_DATA_SIZE); `stopCopyLengthEstimate` is then what its user says
 *   to assume instead.
 * - `enablePrecopyInfoV2` is the opt-in to `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2` (kernel
 *   series of 2026): answers whether the device took it. Only then may `precopyInfo` report
 *   `reinit`. A device without it (absent, or answering false) never reports REINIT.
 */
export interface Device {
  readonly id: string
  readonly kind: DeviceKind
  readonly flags: Flags
  readonly getState: Effect.Effect<State, DeviceError>
  readonly setState: (to: State) => Effect.Effect<void, DeviceError>
  /**
   * The next bytes of the data session, at most `maxBytes`. `into` is a buffer the caller lends
   * for this read: a backend that can read in place fills its start and answers a view of it
   * (`data.buffer === into.buffer`), which spares a fresh buffer per read; a backend that cannot
   * (vfio-user, whose replies arrive in buffers of their own) ignores it, and so does any backend
   * when `into` is shorter than what it reads. The caller must not lend `into` again while the
   * bytes of an earlier read into it are still in use (queued on a socket, say).
   */
  readonly read: (maxBytes: number, into?: Uint8Array) => Effect.Effect<ReadResult, DeviceError>
  /** Writes resuming data. The device has read `data` by the time this completes: the caller may then reuse it. */
  readonly write: (data: Uint8Array) => Effect.Effect<void, DeviceError>
  readonly precopyInfo: Effect.Effect<PrecopyInfo, DeviceError>
  readonly stopCopyLength: Effect.Effect<number, DeviceError>
  /**
   * Bytes to assume for the STOP_COPY data when `stopCopyLength` is unsupported, as the device's
   * user configured it (a group file's `"vfioUser": {"stopCopyLengthEstimate": …}`). Absent: no
   * estimate; a migration then assumes the worst.
   */
  readonly stopCopyLengthEstimate?: number
  /** The opt-in to pre-copy info v2 (REINIT); absent: the device declines it. */
  readonly enablePrecopyInfoV2?: Effect.Effect<boolean, DeviceError>
  /**
   * The device implements the P2P quiescent states by stopping (Intel xe cannot block only its
   * outgoing P2P): the quiesce is safe but costs what a stop costs, which estimates count.
   */
  readonly p2pQuiesceIsStop?: boolean
  readonly reset: Effect.Effect<void, DeviceError>
}

/** The arc a `setState(to)` from `from` asks for. */
export const arcOf = (from: State, to: State): Arc => ({ from, to })

/**
 * The stop arc whose cost a full-stop quiesce (`p2pQuiesceIsStop`) has: RUNNING→RUNNING_P2P
 * costs RUNNING_P2P→STOP, PRE_COPY→PRE_COPY_P2P costs PRE_COPY_P2P→STOP_COPY; `undefined` for
 * any other arc.
 */
export const stopArcOfQuiesce = (arc: Arc): Arc | undefined =>
  arc.from === "RUNNING" && arc.to === "RUNNING_P2P"
    ? { from: "RUNNING_P2P", to: "STOP" }
    : arc.from === "PRE_COPY" && arc.to === "PRE_COPY_P2P"
      ? { from: "PRE_COPY_P2P", to: "STOP_COPY" }
      : undefined
