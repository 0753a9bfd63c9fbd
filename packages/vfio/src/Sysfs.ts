import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs"
import { basename, join } from "node:path"
import type { DeviceKind } from "@lockstep/device"
import type { Holder, OpenProblem } from "./VfioError.js"

/** Where a device is: its character device, and its sysfs directory when known. */
export interface DeviceLocation {
  /** `/dev/vfio/devices/vfioN`. */
  readonly cdev: string
  /** The device's sysfs directory (QEMU's `sysfsdev=`), e.g. `/sys/bus/mdev/devices/UUID`. */
  readonly sysfsdev: string | undefined
}

/** Where the kernel puts VFIO device cdevs. */
export const cdevDirectory = "/dev/vfio/devices"

const linkName = (path: string): string | undefined => {
  try {
    return basename(readlinkSync(path))
  } catch {
    return undefined
  }
}

/**
 * Finds a device's cdev from its sysfs directory (`SYSFS/vfio-dev/vfioN` names it) or checks a
 * cdev path, and finds the sysfs directory of a cdev (`/sys/class/vfio-dev/vfioN/device`).
 */
export const locate = (named: { readonly sysfsdev?: string; readonly cdev?: string }): DeviceLocation | OpenProblem => {
  if (named.sysfsdev !== undefined) {
    const sysfsdev = named.sysfsdev
    if (!existsSync(sysfsdev))
      return { _tag: "NotFound", reason: `${sysfsdev} does not exist: no such device in sysfs` }
    const dir = join(sysfsdev, "vfio-dev")
    const entries = existsSync(dir) ? readdirSync(dir).filter((e) => /^vfio\d+$/.test(e)) : []
    const name = entries[0]
    if (name === undefined)
      return {
        _tag: existsSync(cdevDirectory) ? "NotFound" : "Unavailable",
        reason: existsSync(cdevDirectory)
          ? `${sysfsdev} has no vfio-dev entry: the device is not bound to a VFIO driver (bind it to vfio-pci, or use a VFIO mdev driver)`
          : `${sysfsdev} has no vfio-dev entry and there is no ${cdevDirectory}: this kernel lacks the VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV)`
      }
    return { cdev: join(cdevDirectory, name), sysfsdev }
  }
  const cdev = named.cdev ?? ""
  if (!existsSync(cdev))
    return existsSync(cdevDirectory)
      ? { _tag: "NotFound", reason: `${cdev} does not exist: no such VFIO device` }
      : {
          _tag: "Unavailable",
          reason: `${cdev} does not exist, and neither does ${cdevDirectory}: this kernel has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV), or no device is bound to a VFIO driver`
        }
  const device = join("/sys/class/vfio-dev", basename(cdev), "device")
  let sysfsdev: string | undefined
  try {
    sysfsdev = realpathSync(device)
  } catch {
    sysfsdev = undefined
  }
  return { cdev, sysfsdev }
}

/** Facts sysfs tells about a device: its driver and, for an mdev, its type. */
export interface SysfsFacts {
  readonly driver: string | undefined
  readonly mdevType: string | undefined
}

/** Reads the driver and mdev type links of a sysfs device directory. */
export const sysfsFacts = (sysfsdev: string | undefined): SysfsFacts =>
  sysfsdev === undefined
    ? { driver: undefined, mdevType: undefined }
    : { driver: linkName(join(sysfsdev, "driver")), mdevType: linkName(join(sysfsdev, "mdev_type")) }

/** The kind sysfs implies when a group file does not say: `mdev` under the mdev bus, `pci` otherwise. */
export const kindOf = (location: DeviceLocation): DeviceKind => {
  const real = location.sysfsdev === undefined ? "" : location.sysfsdev
  return real.includes("/mdev/") || existsSync(join(real, "mdev_type")) ? "mdev" : "pci"
}

/**
 * The processes that have `path` open, found through `/proc/PID/fd`. Used only to explain a
 * refusal, so unreadable entries (other users' processes) are skipped.
 */
export const holdersOf = (path: string): ReadonlyArray<Holder> => {
  const holders: Array<Holder> = []
  let pids: ReadonlyArray<string>
  try {
    pids = readdirSync("/proc").filter((e) => /^\d+$/.test(e))
  } catch {
    return holders
  }
  for (const pid of pids) {
    let fds: ReadonlyArray<string>
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue
    }
    const holds = fds.some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === path
      } catch {
        return false
      }
    })
    if (!holds) continue
    let command: string | undefined
    try {
      command = readFileSync(`/proc/${pid}/comm`, "utf8").trim()
    } catch {
      command = undefined
    }
    holders.push({ pid: Number(pid), command })
  }
  return holders
}
