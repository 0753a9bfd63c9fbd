import { constants } from "node:os"
import type { DeviceError } from "@lockstep/device"

const errnoByName: Readonly<Record<string, number>> = constants.errno

const nameByErrno = new Map<number, string>()
for (const [name, n] of Object.entries(errnoByName)) if (!nameByErrno.has(n)) nameByErrno.set(n, name)

/** The errno number of a code such as `EINVAL`, if the platform defines it. */
export const errnoOfCode = (code: string): number | undefined => errnoByName[code]

/** The name of an errno number (`22` → `EINVAL`), or `ERRNO_<n>` when the platform has none. */
export const codeOfErrno = (errno: number): string => nameByErrno.get(errno) ?? `ERRNO_${errno}`

const EINVAL = errnoByName.EINVAL ?? 22
const EIO = errnoByName.EIO ?? 5
const ENODEV = errnoByName.ENODEV ?? 19

/**
 * The errno a server answers for a device failure: a refused arc is `EINVAL` (the kernel's
 * answer to an illegal transition), an unreachable backend is `ENODEV`, and otherwise the
 * failure's own code when it names an errno, else `EIO`.
 */
export const errnoOfDeviceError = (error: DeviceError): number => {
  const reason = error.reason
  switch (reason._tag) {
    case "ArcRejected":
      return EINVAL
    case "DeviceUnreachable":
      return ENODEV
    default:
      return errnoOfCode(reason.code) ?? EIO
  }
}
