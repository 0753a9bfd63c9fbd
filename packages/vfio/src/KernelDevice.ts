import {
  type Device,
  DeviceError,
  type DeviceKind,
  type PrecopyInfo as PortPrecopyInfo,
  type ReadResult,
  type SessionOperation
} from "@lockstep/device"
import { type Flags, flagNames, isArc, isSaving, type State, StateNumber, stateOfNumber } from "@lockstep/fsm"
import { codeOfErrno } from "@lockstep/vfio-user"
import { Effect, Result, type Scope } from "effect"
import { type Native, nativeAccess, OpenReadWrite } from "./Native.js"
import { type DeviceLocation, holdersOf, kindOf, locate, sysfsFacts } from "./Sysfs.js"
import {
  AttachIommufdPt,
  BindIommufd,
  DeviceFeature,
  DeviceInfo,
  encode,
  Feature,
  FeatureMigDataSize,
  FeatureMigration,
  FeatureMigState,
  FeatureOp,
  featureBuffer,
  IoasAlloc,
  Ioctl,
  PrecopyInfo,
  PrecopyInfoReinit,
  RegionInfo,
  u32,
  u64
} from "./Uapi.js"
import { type OpenProblem, VfioError } from "./VfioError.js"

/** How to find a kernel device: exactly one of its sysfs directory or its cdev. */
export type VfioPath = { readonly sysfsdev: string } | { readonly cdev: string }

/** Options of {@link openVfioDevice}. */
export type VfioOptions = VfioPath & {
  /** The device id in errors and to the coordinator (default: the path). */
  readonly id?: string
  /** The device kind (default: `mdev` for a mediated device, else `pci`). */
  readonly kind?: DeviceKind
  /** The native calls (default: libc's, through koffi). Tests give a fake kernel here. */
  readonly native?: Native
  /**
   * The driver implements RUNNING_P2P by stopping the device (Intel xe); the kernel does not
   * say so, so its user declares it (a group file's `"vfio": {…, "p2pQuiesceIsStop": true}`).
   */
  readonly p2pQuiesceIsStop?: boolean
}

/** What opening the device learned about it. */
export interface KernelDeviceInfo {
  readonly cdev: string
  readonly sysfsdev: string | undefined
  readonly driver: string | undefined
  readonly mdevType: string | undefined
  /** `vfio_device_info.flags` (see `DeviceInfoFlag`). */
  readonly flags: number
  readonly numRegions: number
  readonly numIrqs: number
  /** The iommufd device id the bind returned, and the IOAS it is attached to. */
  readonly devid: number
  readonly ioasId: number
  /** The kernel took the `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2` opt-in (pre-copy info then reports REINIT). */
  readonly precopyInfoV2: boolean
  /** Why the device has no migration support, when `VFIO_DEVICE_FEATURE` GET MIGRATION failed. */
  readonly migrationError: string | undefined
}

/** `vfio_region_info` of one region. */
export interface KernelRegionInfo {
  readonly index: number
  readonly flags: number
  readonly size: bigint
  readonly offset: bigint
}

/** Pre-copy info with the v2 flag. */
export interface KernelPrecopyInfo extends PortPrecopyInfo {
  /** `VFIO_PRECOPY_INFO_REINIT`: new initial data is on the stream (only reported after the v2 opt-in). */
  readonly reinit: boolean
}

/**
 * A device bound to a kernel VFIO driver, opened through its cdev and bound to an iommufd:
 * the `Device` port, region access and what the kernel told about it. Every call is one or a
 * few ioctls or read/write calls, done synchronously.
 */
export interface VfioDevice extends Device {
  readonly info: KernelDeviceInfo
  readonly regionInfo: (index: number) => Effect.Effect<KernelRegionInfo, VfioError>
  readonly regionRead: (index: number, offset: bigint, count: number) => Effect.Effect<Uint8Array, VfioError>
  readonly regionWrite: (index: number, offset: bigint, data: Uint8Array) => Effect.Effect<void, VfioError>
  /** The v2 opt-in: true when taken, false when the kernel or driver lacks it (ENOTTY, EINVAL). */
  readonly enablePrecopyInfoV2: Effect.Effect<boolean, DeviceError>
  /** `VFIO_MIG_GET_PRECOPY_INFO` with its flags (`reinit` only after the v2 opt-in). */
  readonly precopyDetails: Effect.Effect<KernelPrecopyInfo, DeviceError>
  /**
   * One `SET MIG_DEVICE_STATE` to any state, which the kernel reaches by walking the combination
   * path itself (as QEMU asks). Lockstep never uses it to migrate: it keeps the ordering by
   * setting one arc at a time. It exists to compare the kernel's paths with `@lockstep/fsm`'s.
   */
  readonly requestState: (to: State) => Effect.Effect<void, DeviceError>
  /** Fails with a `VfioError` (`DeviceNotReady`) unless the device is in one of `states`: the check before a migration moves anything. */
  readonly requireState: (states: ReadonlyArray<State>) => Effect.Effect<void, VfioError | DeviceError>
}

/** The largest single read of a data session; a caller's bigger `maxBytes` is read in several calls. */
const maxReadBytes = 1 << 20

const ENOMSG = 42

/** The arcs that open a data session (the uAPI's list): entering the saving group, and STOP → RESUMING. */
const opensSession = (from: State, to: State): boolean => (!isSaving(from) && isSaving(to)) || to === "RESUMING"

/** States in which a data session stays open. */
const keepsSession = (s: State): boolean => isSaving(s) || s === "RESUMING"

/** A failed call, named for messages. */
interface Refusal {
  readonly errno: number
  readonly code: string
}

const refusal = (result: number): Refusal => ({ errno: -result, code: codeOfErrno(-result) })

/** Opens the fds and binds the device (the README's five steps); answers the open fds or the problem. */
const bindDevice = (
  native: Native,
  location: DeviceLocation
): Result.Result<
  { readonly fd: number; readonly iommufd: number; readonly devid: number; readonly ioasId: number },
  OpenProblem
> => {
  const fd = native.open(location.cdev, OpenReadWrite)
  if (fd < 0) {
    const { errno, code } = refusal(fd)
    return Result.fail(
      code === "EACCES" || code === "EPERM"
        ? {
            _tag: "Refused",
            step: `open (no permission on ${location.cdev}; run as root or grant access)`,
            code,
            errno
          }
        : { _tag: "Refused", step: `open of ${location.cdev}`, code, errno }
    )
  }
  const closeBoth = (iommufd: number) => {
    native.close(fd)
    if (iommufd >= 0) native.close(iommufd)
  }
  const iommufd = native.open("/dev/iommu", OpenReadWrite)
  if (iommufd < 0) {
    closeBoth(-1)
    const { errno, code } = refusal(iommufd)
    return Result.fail(
      code === "ENOENT"
        ? { _tag: "Unavailable", reason: "there is no /dev/iommu: this kernel has no iommufd (CONFIG_IOMMUFD)" }
        : { _tag: "Refused", step: "open of /dev/iommu", code, errno }
    )
  }
  const bind = new Uint8Array(BindIommufd.size)
  encode(BindIommufd, bind, { argsz: BindIommufd.size, iommufd })
  const bound = native.ioctl(fd, Ioctl.DEVICE_BIND_IOMMUFD, bind)
  if (bound < 0) {
    closeBoth(iommufd)
    const { errno, code } = refusal(bound)
    // The kernel answers a second bind of a bound device with EINVAL (seen on 6.12), or EBUSY.
    if (code === "EINVAL" || code === "EBUSY") {
      const holders = holdersOf(location.cdev)
      if (holders.length > 0 || code === "EBUSY") return Result.fail({ _tag: "Held", holders })
    }
    return Result.fail({ _tag: "Refused", step: "VFIO_DEVICE_BIND_IOMMUFD", code, errno })
  }
  const ioas = new Uint8Array(IoasAlloc.size)
  encode(IoasAlloc, ioas, { size: IoasAlloc.size })
  const allocated = native.ioctl(iommufd, Ioctl.IOMMU_IOAS_ALLOC, ioas)
  if (allocated < 0) {
    closeBoth(iommufd)
    const { errno, code } = refusal(allocated)
    return Result.fail({ _tag: "Refused", step: "IOMMU_IOAS_ALLOC", code, errno })
  }
  const ioasId = u32(IoasAlloc, ioas, "out_ioas_id")
  const attach = new Uint8Array(AttachIommufdPt.size)
  encode(AttachIommufdPt, attach, { argsz: AttachIommufdPt.size, pt_id: ioasId })
  const attached = native.ioctl(fd, Ioctl.DEVICE_ATTACH_IOMMUFD_PT, attach)
  if (attached < 0) {
    closeBoth(iommufd)
    const { errno, code } = refusal(attached)
    return Result.fail({ _tag: "Refused", step: "VFIO_DEVICE_ATTACH_IOMMUFD_PT", code, errno })
  }
  return Result.succeed({ fd, iommufd, devid: u32(BindIommufd, bind, "out_devid"), ioasId })
}

/** The device's info, migration flags and the pre-copy v2 opt-in, asked once at open. */
const describeDevice = (native: Native, fd: number) => {
  const info = new Uint8Array(DeviceInfo.size)
  encode(DeviceInfo, info, { argsz: DeviceInfo.size })
  const got = native.ioctl(fd, Ioctl.DEVICE_GET_INFO, info)
  const migration = featureBuffer(Feature.MIGRATION, FeatureOp.GET, FeatureMigration)
  const mig = native.ioctl(fd, Ioctl.DEVICE_FEATURE, migration)
  // Opt in to pre-copy info v2 where the kernel has it; older kernels refuse the unknown feature.
  // Any other refusal also leaves v1 here: `enablePrecopyInfoV2` asks again and reports it.
  const v2 = precopyInfoV2Answer(optInPrecopyInfoV2(native, fd))
  return {
    flags: got < 0 ? 0 : u32(DeviceInfo, info, "flags"),
    numRegions: got < 0 ? 0 : u32(DeviceInfo, info, "num_regions"),
    numIrqs: got < 0 ? 0 : u32(DeviceInfo, info, "num_irqs"),
    migrationFlags: mig < 0 ? 0 : Number(u64(FeatureMigration, migration, "flags", DeviceFeature.size) & 7n),
    migrationError:
      mig < 0
        ? `the kernel refused VFIO_DEVICE_FEATURE GET MIGRATION (${refusal(mig).code}): the driver has no migration support`
        : undefined,
    precopyInfoV2: Result.isSuccess(v2) && v2.success
  }
}

/** `VFIO_DEVICE_FEATURE` SET `MIG_PRECOPY_INFOv2` (no data): the ioctl's answer. */
const optInPrecopyInfoV2 = (native: Native, fd: number): number =>
  native.ioctl(fd, Ioctl.DEVICE_FEATURE, featureBuffer(Feature.MIG_PRECOPY_INFO_V2, FeatureOp.SET, undefined))

/**
 * What the opt-in's answer means: taken (true), or declined (false) when the kernel does not know
 * the feature (ENOTTY: kernels before the 2026 series, such as 6.12) or the driver refuses it
 * (EINVAL: `vfio_check_feature` for a driver without it). Any other refusal is a failure.
 */
const precopyInfoV2Answer = (result: number): Result.Result<boolean, Refusal> => {
  if (result >= 0) return Result.succeed(true)
  const r = refusal(result)
  return r.code === "ENOTTY" || r.code === "EINVAL" ? Result.succeed(false) : Result.fail(r)
}

/**
 * Opens a device bound to a kernel VFIO driver: finds its cdev (from its sysfs directory, as
 * QEMU's `sysfsdev=`, or given), opens it and /dev/iommu, binds it (`VFIO_DEVICE_BIND_IOMMUFD`),
 * allocates an IOAS and attaches the device to it, reads its info and migration flags, and opts
 * in to pre-copy info v2 where the kernel has it. The fds close when the scope closes; the
 * device's migration state outlives them (the kernel keeps it), so the caller leaves it where
 * it means to.
 *
 * Every failure names the device and why: no VFIO on this machine, no such device, a device
 * held by another process (naming it), or the step the kernel refused with its errno.
 */
export const openVfioDevice = Effect.fn("Vfio.open")(function* (
  options: VfioOptions
): Effect.fn.Return<VfioDevice, VfioError, Scope.Scope> {
  const path = "sysfsdev" in options ? options.sysfsdev : options.cdev
  const id = options.id ?? path
  const failed = (problem: OpenProblem) => VfioError.openFailed({ device: id, path, problem })
  const native = options.native === undefined ? nativeAccess() : Result.succeed(options.native)
  if (Result.isFailure(native)) return yield* failed({ _tag: "Unavailable", reason: native.failure })
  const location = locate(options)
  if ("_tag" in location) return yield* failed(location)
  const bound = bindDevice(native.success, location)
  if (Result.isFailure(bound)) return yield* failed(bound.failure)
  const { fd, iommufd } = bound.success
  const calls = new KernelCalls(native.success, fd, id, location.cdev)
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      calls.closeSession()
      native.success.close(fd)
      native.success.close(iommufd)
    })
  )
  const described = describeDevice(native.success, fd)
  const info: KernelDeviceInfo = {
    cdev: location.cdev,
    sysfsdev: location.sysfsdev,
    ...sysfsFacts(location.sysfsdev),
    flags: described.flags,
    numRegions: described.numRegions,
    numIrqs: described.numIrqs,
    devid: bound.success.devid,
    ioasId: bound.success.ioasId,
    precopyInfoV2: described.precopyInfoV2,
    migrationError: described.migrationError
  }
  const device = makeDevice(calls, info, described.migrationFlags, options.kind ?? kindOf(location))
  return options.p2pQuiesceIsStop === true ? { ...device, p2pQuiesceIsStop: true } : device
})

/**
 * The device's calls, synchronous: each answers its value or a `Refusal`. One arc is one
 * uninterrupted run of ioctls, so no other fiber's call can come between an arc and the read
 * that checks it.
 */
class KernelCalls {
  /** The open data session's fd. */
  session: number | undefined = undefined
  /**
   * The state the kernel reported after this process's last change of it, until anything else
   * happens (a failure, a reset). The uAPI lets no one else move the device: the driver "must
   * not generate asynchronous device state transitions" outside the user's requests and reset,
   * and the bind makes this process the only user. So an arc starts from it without asking
   * again; every arc still reads the state back after it.
   */
  known: number | undefined = undefined
  /** The one `VFIO_DEVICE_FEATURE` MIG_DEVICE_STATE argument, reused by every GET and SET (arcs are the hot path). */
  private readonly stateBuf = new Uint8Array(DeviceFeature.size + FeatureMigState.size)
  private readonly stateView = new DataView(this.stateBuf.buffer)

  constructor(
    readonly native: Native,
    readonly fd: number,
    readonly id: string,
    readonly cdev: string
  ) {}

  closeSession(): void {
    if (this.session !== undefined) this.native.close(this.session)
    this.session = undefined
  }

  /** `VFIO_DEVICE_FEATURE` GET MIG_DEVICE_STATE: the state number, or a refusal. */
  stateNumber(): number | Refusal {
    const r = this.migState(FeatureOp.GET, 0)
    const n = r < 0 ? refusal(r) : this.stateView.getUint32(migStateAt.device_state, true)
    this.known = typeof n === "number" ? n : undefined
    return n
  }

  /** `VFIO_DEVICE_FEATURE` SET MIG_DEVICE_STATE: the returned data_fd (-1 for none), or a refusal. */
  setStateNumber(n: number): number | Refusal {
    const r = this.migState(FeatureOp.SET, n)
    return r < 0 ? refusal(r) : this.stateView.getInt32(migStateAt.data_fd, true)
  }

  private migState(op: number, state: number): number {
    const view = this.stateView
    view.setUint32(featureAt.argsz, this.stateBuf.length, true)
    view.setUint32(featureAt.flags, Feature.MIG_DEVICE_STATE | op, true)
    view.setUint32(migStateAt.device_state, state, true)
    view.setInt32(migStateAt.data_fd, -1, true)
    return this.native.ioctl(this.fd, Ioctl.DEVICE_FEATURE, this.stateBuf)
  }
}

/** Where the fields of the MIG_DEVICE_STATE argument are: the feature header, then its data. */
const featureAt = { argsz: DeviceFeature.fields.argsz.offset, flags: DeviceFeature.fields.flags.offset }
const migStateAt = {
  device_state: DeviceFeature.size + FeatureMigState.fields.device_state.offset,
  data_fd: DeviceFeature.size + FeatureMigState.fields.data_fd.offset
}

const isRefusal = (u: unknown): u is Refusal => typeof u === "object" && u !== null && "errno" in u

/** The state the kernel reports, or ERROR (the reading that assumes the worst) with why. */
const readBack = (calls: KernelCalls): { readonly state: State; readonly note: string } => {
  const n = calls.stateNumber()
  if (isRefusal(n)) return { state: "ERROR", note: `; state unreadable (${n.code}), reported as ERROR` }
  const state = stateOfNumber(n)
  return state === undefined
    ? { state: "ERROR", note: `; the kernel reports unknown state ${n}, reported as ERROR` }
    : { state, note: "" }
}

/** The device's legal single arcs by uAPI numbers (`from * 8 + to`), asked of `@lockstep/fsm` once: arcs are the hot path. */
const arcTable = (flags: Flags): ReadonlyArray<boolean> =>
  Array.from({ length: 64 }, (_, i) => {
    const from = stateOfNumber(Math.floor(i / 8))
    const to = stateOfNumber(i % 8)
    return from !== undefined && to !== undefined && isArc(flags, from, to)
  })

/** A data-session failure of the device behind `calls`, with the state read back after it. */
const failedSession =
  (calls: KernelCalls) =>
  (operation: SessionOperation, code: string, reason: string): DeviceError => {
    const { state, note } = readBack(calls)
    return DeviceError.sessionFailed({ device: calls.id, operation, code, reason: reason + note, state })
  }

/**
 * The device's one arc runner over `calls`: legal arcs are looked up in a table built once
 * from `flags` (arcs are the hot path).
 */
const arcOn = (calls: KernelCalls, flags: Flags) => {
  const device = calls.id
  const { cdev } = calls
  const legal = arcTable(flags)
  /**
   * One SET, synchronously: refuse what is not one legal arc (unless `kernelWalks`), set it,
   * track the data session, check the state.
   */
  return (to: State, kernelWalks = false): DeviceError | undefined => {
    const now = calls.known ?? calls.stateNumber()
    if (isRefusal(now))
      return DeviceError.sessionFailed({
        device,
        operation: "getState",
        code: now.code,
        reason: `the kernel refused VFIO_DEVICE_FEATURE GET MIG_DEVICE_STATE on ${cdev} (errno ${now.errno})`,
        state: "ERROR"
      })
    const from = stateOfNumber(now) ?? "ERROR"
    const arc = { from, to }
    if (!kernelWalks && legal[now * 8 + StateNumber[to]] !== true)
      return DeviceError.arcRejected({
        device,
        arc,
        code: "EINVAL",
        reason: `not a single legal arc for a device with flags [${flagNames(flags).join(", ")}]; nothing was asked of the kernel`
      })
    calls.known = undefined
    const dataFd = calls.setStateNumber(StateNumber[to])
    if (isRefusal(dataFd)) {
      const { state, note } = readBack(calls)
      if (!keepsSession(state)) calls.closeSession()
      return DeviceError.arcFailed({
        device,
        arc,
        code: dataFd.code,
        reason: `the kernel refused VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE ${from} → ${to} on ${cdev} (errno ${dataFd.errno})${note}`,
        stateAfter: state
      })
    }
    // A new data_fd replaces the session; the saving group shares one fd, and leaving it (or
    // RESUMING) ends the session.
    if (dataFd >= 0) {
      calls.closeSession()
      calls.session = dataFd
    } else if (!keepsSession(to)) calls.closeSession()
    if (calls.stateNumber() !== StateNumber[to]) {
      const { state, note } = readBack(calls)
      return DeviceError.arcFailed({
        device,
        arc,
        code: "EPROTO",
        reason: `the kernel accepted the arc but reports ${state} afterwards${note}`,
        stateAfter: state
      })
    }
    if (!kernelWalks && opensSession(from, to) && calls.session === undefined)
      return DeviceError.arcFailed({
        device,
        arc,
        code: "EBADF",
        reason: "the arc opens a data session, but the kernel returned no data_fd",
        stateAfter: to
      })
    return undefined
  }
}

/** The device's state: read, moved by one arc or by the kernel's own walk, required, reset. */
const stateControl = (calls: KernelCalls, info: KernelDeviceInfo, flags: Flags) => {
  const device = calls.id
  const { native, fd, cdev } = calls
  const arc = arcOn(calls, flags)

  const getState: Effect.Effect<State, DeviceError> = Effect.suspend(() => {
    const n = calls.stateNumber()
    if (isRefusal(n))
      return Effect.fail(
        DeviceError.sessionFailed({
          device,
          operation: "getState",
          code: n.code,
          reason: `the kernel refused VFIO_DEVICE_FEATURE GET MIG_DEVICE_STATE on ${cdev} (errno ${n.errno}); state unknown, reported as ERROR`,
          state: "ERROR"
        })
      )
    const state = stateOfNumber(n)
    return state === undefined
      ? Effect.fail(
          DeviceError.sessionFailed({
            device,
            operation: "getState",
            code: "EPROTO",
            reason: `the kernel reports state ${n}, which is no VFIO migration state; reported as ERROR`,
            state: "ERROR"
          })
        )
      : Effect.succeed(state)
  })

  const setState = (to: State): Effect.Effect<void, DeviceError> =>
    Effect.suspend(() => {
      const failure = arc(to)
      return failure === undefined ? Effect.void : Effect.fail(failure)
    })

  const requestState = (to: State): Effect.Effect<void, DeviceError> =>
    Effect.suspend(() => {
      const failure = arc(to, true)
      return failure === undefined || failure.reason._tag === "ArcRejected" ? Effect.void : Effect.fail(failure)
    })

  const reset: Effect.Effect<void, DeviceError> = Effect.suspend(() => {
    // A reset ends any data session; the kernel's fd would answer nothing more. The state it
    // leaves is read back, never assumed.
    calls.closeSession()
    calls.known = undefined
    const r = native.ioctl(fd, Ioctl.DEVICE_RESET, undefined)
    if (r >= 0) return Effect.void
    const { errno, code } = refusal(r)
    return Effect.fail(
      DeviceError.resetFailed({
        device,
        code,
        reason: `the kernel refused VFIO_DEVICE_RESET on ${cdev} (errno ${errno})`
      })
    )
  })

  const requireState = (expected: ReadonlyArray<State>): Effect.Effect<void, VfioError | DeviceError> =>
    Effect.flatMap(getState, (state) =>
      expected.includes(state)
        ? Effect.void
        : Effect.fail(VfioError.notReady({ device, path: info.sysfsdev ?? cdev, state, expected }))
    )

  return { getState, setState, requestState, reset, requireState }
}

/** The data session: the saving side's reads, the resuming side's writes. */
const dataSession = (calls: KernelCalls) => {
  const device = calls.id
  const { native } = calls
  const sessionFailed = failedSession(calls)

  /** Where reads land before their bytes are copied out: allocated once, grown to the largest read. */
  let scratch = new Uint8Array(0)

  const read = (maxBytes: number, into?: Uint8Array): Effect.Effect<ReadResult, DeviceError> =>
    Effect.suspend(() => {
      if (!Number.isSafeInteger(maxBytes) || maxBytes < 1)
        return Effect.fail(sessionFailed("read", "EINVAL", `maxBytes must be a positive integer, got ${maxBytes}`))
      const session = calls.session
      if (session === undefined)
        return Effect.fail(sessionFailed("read", "EBADF", "no data session is open (no saving arc returned a data_fd)"))
      const size = Math.min(maxBytes, maxReadBytes)
      // A lent buffer is read into in place, and the chunk is a view of it. Otherwise the read
      // lands in the scratch buffer and the chunk is a copy: the scratch serves the next read.
      if (into !== undefined && into.length >= size) {
        const n = native.read(session, into, size)
        if (n > 0) return Effect.succeed<ReadResult>({ _tag: "Chunk", data: into.subarray(0, n) })
        return endOfData(n)
      }
      if (scratch.length < size) scratch = new Uint8Array(size)
      const n = native.read(session, scratch, size)
      if (n > 0) return Effect.succeed<ReadResult>({ _tag: "Chunk", data: scratch.slice(0, n) })
      return endOfData(n)
    })

  /** What a read of `n` ≤ 0 means: no data for now, the end, or a refusal. */
  const endOfData = (n: number): Effect.Effect<ReadResult, DeviceError> => {
    // The end of what there is: for now in pre-copy (0, or ENOMSG as the uAPI asks), for good in STOP_COPY.
    if (n === 0 || n === -ENOMSG) {
      const { state, note } = readBack(calls)
      if (state === "PRE_COPY" || state === "PRE_COPY_P2P") return Effect.succeed<ReadResult>({ _tag: "NoData" })
      if (state === "STOP_COPY" && n === 0) return Effect.succeed<ReadResult>({ _tag: "End" })
      return Effect.fail(
        DeviceError.sessionFailed({
          device,
          operation: "read",
          code: n === 0 ? "EINVAL" : "ENOMSG",
          reason: `the data_fd answered ${n === 0 ? "end of stream" : "ENOMSG"} in ${state}, which is no saving state${note}`,
          state
        })
      )
    }
    const { errno, code } = refusal(n)
    return Effect.fail(sessionFailed("read", code, `read() of the data_fd failed (errno ${errno})`))
  }

  const write = (data: Uint8Array): Effect.Effect<void, DeviceError> =>
    Effect.suspend(() => {
      const session = calls.session
      if (session === undefined)
        return Effect.fail(
          sessionFailed("write", "EBADF", "no resuming data session is open (STOP → RESUMING opens it)")
        )
      let at = 0
      while (at < data.length) {
        const part = at === 0 ? data : data.subarray(at)
        const n = native.write(session, part, part.length)
        if (n <= 0) {
          const { errno, code } = n === 0 ? { errno: 5, code: "EIO" } : refusal(n)
          return Effect.fail(
            sessionFailed(
              "write",
              code,
              `the kernel refused resuming data: write() of ${part.length} bytes failed after ${at} of ${data.length} (errno ${errno})`
            )
          )
        }
        at += n
      }
      return Effect.void
    })

  return { read, write }
}

/** What the kernel says about the migration data: pre-copy info (v2 opt-in) and the stop-copy length. */
const migrationInfo = (calls: KernelCalls, info: KernelDeviceInfo) => {
  const { native, fd } = calls
  const sessionFailed = failedSession(calls)
  /** Pre-copy info v2 is on: the open took it, or `enablePrecopyInfoV2` did since. */
  let precopyInfoV2 = info.precopyInfoV2

  const precopyDetails: Effect.Effect<KernelPrecopyInfo, DeviceError> = Effect.suspend(() => {
    const session = calls.session
    if (session === undefined) return Effect.fail(sessionFailed("precopyInfo", "EINVAL", "no saving session is open"))
    const buf = new Uint8Array(PrecopyInfo.size)
    encode(PrecopyInfo, buf, { argsz: PrecopyInfo.size })
    const r = native.ioctl(session, Ioctl.MIG_GET_PRECOPY_INFO, buf)
    if (r < 0) {
      const { errno, code } = refusal(r)
      return Effect.fail(
        sessionFailed("precopyInfo", code, `the kernel refused VFIO_MIG_GET_PRECOPY_INFO (errno ${errno})`)
      )
    }
    return Effect.succeed({
      initialBytes: Number(u64(PrecopyInfo, buf, "initial_bytes")),
      dirtyBytes: Number(u64(PrecopyInfo, buf, "dirty_bytes")),
      // Without the v2 opt-in the kernel echoes the flags it was given (0): nothing to read there.
      reinit: precopyInfoV2 && (u32(PrecopyInfo, buf, "flags") & PrecopyInfoReinit) !== 0
    })
  })

  const precopyInfo: Effect.Effect<PortPrecopyInfo, DeviceError> = Effect.map(precopyDetails, (d) =>
    d.reinit
      ? { initialBytes: d.initialBytes, dirtyBytes: d.dirtyBytes, reinit: true }
      : { initialBytes: d.initialBytes, dirtyBytes: d.dirtyBytes }
  )

  const enablePrecopyInfoV2: Effect.Effect<boolean, DeviceError> = Effect.suspend(() => {
    // SET is idempotent: asked again even when the open took it, so the answer is today's.
    const answer = precopyInfoV2Answer(optInPrecopyInfoV2(native, fd))
    if (Result.isSuccess(answer)) {
      precopyInfoV2 = answer.success
      return Effect.succeed(answer.success)
    }
    const { errno, code } = answer.failure
    return Effect.fail(
      sessionFailed(
        "enablePrecopyInfoV2",
        code,
        `the kernel refused VFIO_DEVICE_FEATURE SET MIG_PRECOPY_INFOv2 (errno ${errno})`
      )
    )
  })

  const stopCopyLength: Effect.Effect<number, DeviceError> = Effect.suspend(() => {
    const buf = featureBuffer(Feature.MIG_DATA_SIZE, FeatureOp.GET, FeatureMigDataSize)
    const r = native.ioctl(fd, Ioctl.DEVICE_FEATURE, buf)
    if (r < 0) {
      const { errno, code } = refusal(r)
      return Effect.fail(
        sessionFailed(
          "stopCopyLength",
          code,
          `the kernel refused VFIO_DEVICE_FEATURE GET MIG_DATA_SIZE (errno ${errno})`
        )
      )
    }
    const length = u64(FeatureMigDataSize, buf, "stop_copy_length", DeviceFeature.size)
    return length > BigInt(Number.MAX_SAFE_INTEGER)
      ? Effect.fail(sessionFailed("stopCopyLength", "EOVERFLOW", `stop_copy_length ${length} is not a safe integer`))
      : Effect.succeed(Number(length))
  })

  return { precopyInfo, precopyDetails, enablePrecopyInfoV2, stopCopyLength }
}

/** The device's regions: their info, and reads and writes at an offset checked against their size. */
const regions = (calls: KernelCalls) => {
  const device = calls.id
  const { native, fd } = calls

  const regionInfo = (index: number): Effect.Effect<KernelRegionInfo, VfioError> =>
    Effect.suspend(() => {
      const buf = new Uint8Array(RegionInfo.size)
      encode(RegionInfo, buf, { argsz: RegionInfo.size, index })
      const r = native.ioctl(fd, Ioctl.DEVICE_GET_REGION_INFO, buf)
      if (r < 0) {
        const { errno, code } = refusal(r)
        return Effect.fail(
          VfioError.regionAccessFailed({
            device,
            region: index,
            operation: "info",
            code,
            reason: `the kernel refused VFIO_DEVICE_GET_REGION_INFO (errno ${errno})`
          })
        )
      }
      return Effect.succeed({
        index,
        flags: u32(RegionInfo, buf, "flags"),
        size: u64(RegionInfo, buf, "size"),
        offset: u64(RegionInfo, buf, "offset")
      })
    })

  const regionAccess = (index: number, operation: "read" | "write", offset: bigint, count: number) =>
    Effect.flatMap(regionInfo(index), (region) =>
      offset < 0n || offset + BigInt(count) > region.size
        ? Effect.fail(
            VfioError.regionAccessFailed({
              device,
              region: index,
              operation,
              code: "EINVAL",
              reason: `${count} bytes at offset ${offset} do not fit in the region's ${region.size} bytes`
            })
          )
        : Effect.succeed(region.offset + offset)
    )

  const ioFailed = (index: number, operation: "read" | "write", n: number, count: number) => {
    const { errno, code } = n < 0 ? refusal(n) : { errno: 5, code: "EIO" }
    return VfioError.regionAccessFailed({
      device,
      region: index,
      operation,
      code,
      reason: `p${operation}() of ${count} bytes answered ${n < 0 ? `errno ${errno}` : `${n} bytes`}`
    })
  }

  const regionRead = (index: number, offset: bigint, count: number) =>
    Effect.flatMap(regionAccess(index, "read", offset, count), (at) => {
      const buf = new Uint8Array(count)
      const n = native.pread(fd, buf, count, at)
      return n === count ? Effect.succeed(buf) : Effect.fail(ioFailed(index, "read", n, count))
    })

  const regionWrite = (index: number, offset: bigint, data: Uint8Array) =>
    Effect.flatMap(regionAccess(index, "write", offset, data.length), (at) => {
      const n = native.pwrite(fd, data, data.length, at)
      return n === data.length ? Effect.void : Effect.fail(ioFailed(index, "write", n, data.length))
    })

  return { regionInfo, regionRead, regionWrite }
}

const makeDevice = (calls: KernelCalls, info: KernelDeviceInfo, flags: Flags, kind: DeviceKind): VfioDevice => ({
  id: calls.id,
  kind,
  flags,
  info,
  ...stateControl(calls, info, flags),
  ...dataSession(calls),
  ...migrationInfo(calls, info),
  ...regions(calls)
})
