import { existsSync, mkdirSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { type Native, nativeAccess, openVfioDevice, p2pQuiesceIsStopOf, vfioPathOf } from "@lockstep/vfio"
import { Effect, Result } from "effect"

/*
 * The backend against a fake kernel: a Native whose ioctls answer as the uAPI says (buffers
 * decoded at the header's offsets, written out here by hand), with refusals scripted per test.
 * What the real kernel does is the kernel suite's to show (test/kernel); here the backend's own
 * rules are pinned: errno mapping, data sessions, read endings, state checks.
 */

const EINVAL = 22
const ENOMEM = 12
const ENOMSG = 42
const ENOENT = 2

const DEVICE_FD = 10
const IOMMU_FD = 11

interface Script {
  /** Answer for SET MIG_DEVICE_STATE to this state number: an errno to refuse with. */
  refuseSet?: number
  /** State GET reports after a SET succeeds, instead of the one set. */
  driftTo?: number
  /** `open("/dev/iommu")` fails with this errno. */
  iommuErrno?: number
  /** What reads of the data fd answer, in turn (a byte count, or -errno). */
  reads?: Array<number>
  /** What writes answer, in turn (bytes taken, or -errno); default: everything. */
  writes?: Array<number>
  /** The answer to SET MIG_PRECOPY_INFOv2 (feature 12): 0 takes it, else -errno; default -EINVAL. */
  precopyInfoV2?: number
  /** What VFIO_MIG_GET_PRECOPY_INFO writes into its argument: flags, initial_bytes, dirty_bytes. */
  precopy?: { readonly flags: number; readonly initial: number; readonly dirty: number }
}

/** A fake kernel device, mtty-like: flags 7, states by number, data_fd on the uAPI's session arcs. */
const fakeKernel = (script: Script = {}) => {
  let state = 2
  let nextFd = 100
  const calls: Array<string> = []
  const closed: Array<number> = []
  const readsOn: Array<number> = []
  const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true)
  const setU32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setUint32(at, v, true)
  const setI32 = (b: Uint8Array, at: number, v: number) => new DataView(b.buffer, b.byteOffset).setInt32(at, v, true)
  const saving = (s: number) => s === 3 || s === 6 || s === 7
  /** Fills u32 fields of an ioctl's argument and answers success. */
  const answer = (b: Uint8Array, fields: ReadonlyArray<readonly [number, number]>): number => {
    for (const [at, v] of fields) setU32(b, at, v)
    return 0
  }
  const native: Native = {
    open: (path) =>
      path === "/dev/iommu" ? (script.iommuErrno === undefined ? IOMMU_FD : -script.iommuErrno) : DEVICE_FD,
    close: (fd) => {
      closed.push(fd)
      return 0
    },
    ioctl: (fd, request, arg) => {
      calls.push(request.toString(16))
      if (arg === undefined) {
        if (request === 0x3b6f) state = 2 // VFIO_DEVICE_RESET
        return 0
      }
      if (request === 0x3b76 || request === 0x3b77) return 0 // bind, attach
      if (request === 0x3b81) return answer(arg, [[8, 5]]) // IOAS id 5
      if (request === 0x3b6b)
        return answer(arg, [
          [4, 2],
          [8, 9]
        ]) // device info: PCI, 9 regions
      if (request === 0x3b79) {
        // precopy info on a data fd: struct vfio_precopy_info {argsz, flags, initial_bytes @8, dirty_bytes @16}
        if (fd < 100) return -EINVAL
        const p = script.precopy
        if (p === undefined) return 0
        const view = new DataView(arg.buffer, arg.byteOffset)
        view.setUint32(4, p.flags, true)
        view.setBigUint64(8, BigInt(p.initial), true)
        view.setBigUint64(16, BigInt(p.dirty), true)
        return 0
      }
      if (request !== 0x3b75) return -EINVAL
      const flags = u32(arg, 4)
      const feature = flags & 0xffff
      const set = (flags & (1 << 17)) !== 0
      if (feature === 1)
        return answer(arg, [
          [8, 7],
          [12, 0]
        ]) // MIGRATION: STOP_COPY|P2P|PRE_COPY
      if (feature === 12) return script.precopyInfoV2 ?? -EINVAL // no pre-copy info v2 on this kernel, by default
      if (feature === 9)
        return answer(arg, [
          [8, 60],
          [12, 0]
        ]) // MIG_DATA_SIZE
      if (feature !== 2) return -EINVAL
      if (!set)
        return answer(arg, [
          [8, state],
          [12, 0xffffffff]
        ]) // data_fd -1
      const to = u32(arg, 8)
      calls.push(`SET ${to}`)
      if (script.refuseSet !== undefined) return -script.refuseSet
      const opens = (!saving(state) && saving(to)) || to === 4
      state = script.driftTo ?? to
      setI32(arg, 12, opens ? nextFd++ : -1)
      return 0
    },
    read: (fd, _buf, count) => {
      readsOn.push(fd)
      const next = script.reads?.shift() ?? 0
      return Math.min(next, count)
    },
    write: (_fd, _buf, count) => {
      const next = script.writes?.shift()
      return next === undefined ? count : Math.min(next, count)
    },
    pread: (_fd, _buf, count) => count,
    pwrite: (_fd, _buf, count) => count
  }
  return { native, calls, closed, readsOn, state: () => state }
}

const sysfsdev = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "vfio-sysfs-"))
  mkdirSync(join(dir, "vfio-dev", "vfio7"), { recursive: true })
  return dir
}

const open = (kernel: ReturnType<typeof fakeKernel>) =>
  openVfioDevice({ sysfsdev: sysfsdev(), id: "gpu0", kind: "pci", native: kernel.native })

describe("opening", () => {
  it("the package loads and its FFI binds here (koffi ships its binaries in its npm package)", () => {
    expect(Result.isSuccess(nativeAccess()) || process.platform !== "linux").toBe(true)
  })

  it.effect("says why a kernel device cannot be opened on a machine without VFIO", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Effect.scoped(openVfioDevice({ cdev: "/dev/vfio/devices/vfio999" })))
      expect(error._tag).toBe("VfioError")
      expect(error.reason._tag).toBe("VfioOpenFailed")
      // Derived from the machine: without the cdev directory the kernel has no VFIO cdev at all.
      if (!existsSync("/dev/vfio/devices"))
        expect(error.message).toBe(
          "cannot open kernel device /dev/vfio/devices/vfio999: /dev/vfio/devices/vfio999 does not exist, and neither does /dev/vfio/devices: this kernel has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV), or no device is bound to a VFIO driver"
        )
      else expect(error.message).toContain("does not exist: no such VFIO device")
    })
  )

  it.effect("names a sysfs path that is no device, and one not bound to a VFIO driver", () =>
    Effect.gen(function* () {
      const missing = yield* Effect.flip(Effect.scoped(openVfioDevice({ sysfsdev: "/sys/bus/mdev/devices/nope" })))
      expect(missing.message).toContain("/sys/bus/mdev/devices/nope does not exist: no such device in sysfs")
      const unbound = mkdtempSync(join(tmpdir(), "vfio-unbound-"))
      const error = yield* Effect.flip(Effect.scoped(openVfioDevice({ sysfsdev: unbound })))
      expect(error.message).toContain(`${unbound} has no vfio-dev entry`)
    })
  )

  it.effect("a kernel without iommufd is named as such", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Effect.scoped(open(fakeKernel({ iommuErrno: ENOENT }))))
      expect(error.reason).toMatchObject({ _tag: "VfioOpenFailed" })
      expect(error.reason._tag === "VfioOpenFailed" ? error.reason.problem : undefined).toEqual({
        _tag: "Unavailable",
        reason: "there is no /dev/iommu: this kernel has no iommufd (CONFIG_IOMMUFD)"
      })
    })
  )

  it.effect("binds, reads flags and info, and closes its fds with the scope", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel()
      const device = yield* Effect.scoped(open(kernel))
      expect(device.flags).toBe(7)
      expect(device.info).toMatchObject({
        cdev: "/dev/vfio/devices/vfio7",
        ioasId: 5,
        numRegions: 9,
        precopyInfoV2: false
      })
      expect(kernel.calls.slice(0, 3)).toEqual(["3b76", "3b81", "3b77"])
      expect(kernel.closed.sort()).toEqual([DEVICE_FD, IOMMU_FD])
    })
  )
})

describe("arcs", () => {
  it.effect("a kernel refusal names the device, the arc and the errno, with the state read back", () =>
    Effect.gen(function* () {
      const device = yield* open(fakeKernel({ refuseSet: EINVAL }))
      const error = yield* Effect.flip(device.setState("RUNNING_P2P"))
      expect(error).toMatchObject({
        reason: {
          _tag: "ArcFailed",
          device: "gpu0",
          arc: { from: "RUNNING", to: "RUNNING_P2P" },
          code: "EINVAL",
          stateAfter: "RUNNING"
        }
      })
      expect(error.message).toContain("errno 22")
    }).pipe(Effect.scoped)
  )

  it.effect("refuses what is not one legal arc without asking the kernel", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel()
      const device = yield* open(kernel)
      const error = yield* Effect.flip(device.setState("STOP_COPY"))
      expect(error).toMatchObject({
        reason: { _tag: "ArcRejected", arc: { from: "RUNNING", to: "STOP_COPY" }, code: "EINVAL" }
      })
      expect(kernel.calls.filter((c) => c.startsWith("SET"))).toEqual([])
    }).pipe(Effect.scoped)
  )

  it.effect("checks the state the kernel reports after every arc", () =>
    Effect.gen(function* () {
      const device = yield* open(fakeKernel({ driftTo: 1 }))
      const error = yield* Effect.flip(device.setState("RUNNING_P2P"))
      expect(error).toMatchObject({ reason: { _tag: "ArcFailed", code: "EPROTO", stateAfter: "STOP" } })
    }).pipe(Effect.scoped)
  )
})

describe("data sessions", () => {
  it.effect("the pre-copy fd carries on through PRE_COPY_P2P into STOP_COPY, and closes when the group is left", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel({ reads: [24, 0, 36, 0] })
      const device = yield* open(kernel)
      yield* device.setState("PRE_COPY")
      expect((yield* device.read(4096))._tag).toBe("Chunk")
      expect(yield* device.read(4096)).toEqual({ _tag: "NoData" })
      yield* device.setState("PRE_COPY_P2P")
      yield* device.setState("STOP_COPY")
      expect(yield* device.read(4096)).toMatchObject({ _tag: "Chunk" })
      expect(yield* device.read(4096)).toEqual({ _tag: "End" })
      expect(kernel.readsOn).toEqual([100, 100, 100, 100])
      yield* device.setState("STOP")
      expect(kernel.closed).toEqual([100])
    }).pipe(Effect.scoped)
  )

  it.effect("a drained pre-copy read may end with 0 or ENOMSG; ENOMSG in STOP_COPY is an error", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel({ reads: [-ENOMSG, -ENOMSG] })
      const device = yield* open(kernel)
      yield* device.setState("PRE_COPY")
      expect(yield* device.read(4096)).toEqual({ _tag: "NoData" })
      yield* device.setState("PRE_COPY_P2P")
      yield* device.setState("STOP_COPY")
      const error = yield* Effect.flip(device.read(4096))
      expect(error).toMatchObject({
        reason: { _tag: "SessionFailed", operation: "read", code: "ENOMSG", state: "STOP_COPY" }
      })
    }).pipe(Effect.scoped)
  )

  it.effect("writes until the kernel took everything; a refusal names the device and errno", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel({ writes: [10, 20, -ENOMEM] })
      const device = yield* open(kernel)
      for (const s of ["RUNNING_P2P", "STOP", "RESUMING"] as const) yield* device.setState(s)
      const error = yield* Effect.flip(device.write(new Uint8Array(60)))
      expect(error).toMatchObject({
        reason: { _tag: "SessionFailed", device: "gpu0", operation: "write", code: "ENOMEM" }
      })
      expect(error.message).toContain("after 30 of 60")
    }).pipe(Effect.scoped)
  )

  it.effect("reset closes the session and reads the state back", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel()
      const device = yield* open(kernel)
      yield* device.setState("PRE_COPY")
      yield* device.reset
      expect(kernel.closed).toEqual([100])
      expect(yield* device.getState).toBe("RUNNING")
      expect(yield* Effect.flip(device.read(10))).toMatchObject({ reason: { code: "EBADF" } })
    }).pipe(Effect.scoped)
  )
})

describe("pre-copy info v2", () => {
  const ENOTTY = 25
  const EIO = 5
  const reinitInfo = { flags: 1, initial: 4096, dirty: 0 }

  it.effect(
    "a kernel without the feature (ENOTTY, as 6.12) or a driver refusing it (EINVAL) declines; no REINIT is read",
    () =>
      Effect.gen(function* () {
        for (const errno of [ENOTTY, EINVAL]) {
          const device = yield* open(fakeKernel({ precopyInfoV2: -errno, precopy: reinitInfo }))
          expect(device.info.precopyInfoV2).toBe(false)
          expect(yield* device.enablePrecopyInfoV2).toBe(false)
          yield* device.setState("PRE_COPY")
          // v1: the flags field is reserved (a v1 kernel echoes what it was given), so bit 0 means nothing.
          expect(yield* device.precopyInfo).toEqual({ initialBytes: 4096, dirtyBytes: 0 })
        }
      }).pipe(Effect.scoped)
  )

  it.effect("taken, VFIO_PRECOPY_INFO_REINIT (flags bit 0) passes through with the new initial bytes", () =>
    Effect.gen(function* () {
      const kernel = fakeKernel({ precopyInfoV2: 0, precopy: reinitInfo })
      const device = yield* open(kernel)
      expect(device.info.precopyInfoV2).toBe(true)
      expect(yield* device.enablePrecopyInfoV2).toBe(true)
      yield* device.setState("PRE_COPY")
      expect(yield* device.precopyInfo).toEqual({ initialBytes: 4096, dirtyBytes: 0, reinit: true })
    }).pipe(Effect.scoped)
  )

  it.effect("flags without bit 0 is no REINIT; any other refusal of the opt-in is a failure naming the errno", () =>
    Effect.gen(function* () {
      const quiet = yield* open(fakeKernel({ precopyInfoV2: 0, precopy: { flags: 0x2, initial: 0, dirty: 64 } }))
      yield* quiet.setState("PRE_COPY")
      expect(yield* quiet.precopyInfo).toEqual({ initialBytes: 0, dirtyBytes: 64 })
      const broken = yield* open(fakeKernel({ precopyInfoV2: -EIO }))
      expect(broken.info.precopyInfoV2).toBe(false)
      const error = yield* Effect.flip(broken.enablePrecopyInfoV2)
      expect(error).toMatchObject({ reason: { _tag: "SessionFailed", operation: "enablePrecopyInfoV2", code: "EIO" } })
      expect(error.message).toContain("errno 5")
    }).pipe(Effect.scoped)
  )
})

describe("full-stop quiesce", () => {
  it("a group file's vfio key may declare p2pQuiesceIsStop; anything but a boolean is refused", () => {
    expect(vfioPathOf({ sysfsdev: "/sys/bus/pci/devices/0000:03:00.1", p2pQuiesceIsStop: true })).toEqual({
      sysfsdev: "/sys/bus/pci/devices/0000:03:00.1"
    })
    expect(p2pQuiesceIsStopOf({ cdev: "/dev/vfio/devices/vfio7", p2pQuiesceIsStop: true })).toBe(true)
    expect(p2pQuiesceIsStopOf({ cdev: "/dev/vfio/devices/vfio7" })).toBe(false)
    expect(p2pQuiesceIsStopOf({ cdev: "/dev/vfio/devices/vfio7", p2pQuiesceIsStop: "yes" })).toContain("true or false")
    expect(vfioPathOf({ p2pQuiesceIsStop: true })).toContain("exactly one")
  })

  it.effect("the device declares it when opened with it, and not otherwise", () =>
    Effect.gen(function* () {
      const xe = yield* openVfioDevice({
        sysfsdev: sysfsdev(),
        id: "xe0",
        native: fakeKernel().native,
        p2pQuiesceIsStop: true
      })
      expect(xe.p2pQuiesceIsStop).toBe(true)
      expect((yield* open(fakeKernel())).p2pQuiesceIsStop).toBeUndefined()
    }).pipe(Effect.scoped)
  )
})
