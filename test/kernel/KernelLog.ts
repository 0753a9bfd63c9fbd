/**
 * The kernel's own record of every migration arc mtty executes: with dynamic debug on for
 * mtty.c, one line per arc, in the order the kernel ran them,
 *
 *   [   31.604302] mtty 6c6f636b-7374-4570-8000-000000000001: mtty_step_state: 2 -> 5
 *
 * The numbers are `enum vfio_device_mig_state` of include/uapi/linux/vfio.h. The driver logs
 * the arc as it starts it, so a line is an arc the kernel tried (a refused RESUMING -> STOP is
 * logged too). Written from the README of the kernel VM, mtty.c and the uAPI; nothing of Lockstep's.
 */
import { constants, openSync, readSync } from "node:fs"

/** `enum vfio_device_mig_state`, by number. */
export const uapiStates = [
  "ERROR",
  "STOP",
  "RUNNING",
  "STOP_COPY",
  "RESUMING",
  "RUNNING_P2P",
  "PRE_COPY",
  "PRE_COPY_P2P"
] as const

/** A migration state's name. */
export type StateName = (typeof uapiStates)[number]

/** One arc the kernel logged. */
export interface LoggedArc {
  /** The mdev's UUID. */
  readonly device: string
  readonly from: StateName
  readonly to: StateName
}

const line = /mtty ([0-9a-f-]{36}): mtty_step_state: (\d+) -> (\d+)/

/** The arcs in a log text, in order. */
export const parseArcs = (text: string): ReadonlyArray<LoggedArc> =>
  text.split("\n").flatMap((l) => {
    const m = line.exec(l)
    const from = m === null ? undefined : uapiStates[Number(m[2])]
    const to = m === null ? undefined : uapiStates[Number(m[3])]
    return m?.[1] === undefined || from === undefined || to === undefined ? [] : [{ device: m[1], from, to }]
  })

let kmsg: { readonly fd: number; readonly arcs: Array<LoggedArc> } | undefined

/**
 * Every arc in the kernel log so far, read from /dev/kmsg (one record per read, non-blocking:
 * EAGAIN once everything is read), kept open so that each call reads only what is new.
 */
export const kernelArcs = (): ReadonlyArray<LoggedArc> => {
  kmsg ??= { fd: openSync("/dev/kmsg", constants.O_RDONLY | constants.O_NONBLOCK), arcs: [] }
  const buf = Buffer.alloc(8192)
  for (;;) {
    let n: number
    try {
      n = readSync(kmsg.fd, buf, 0, buf.length, null)
    } catch (error) {
      // EAGAIN: nothing more for now. EPIPE: records were overwritten before we read them.
      if (error instanceof Error && "code" in error && error.code === "EPIPE") continue
      break
    }
    kmsg.arcs.push(...parseArcs(buf.toString("utf8", 0, n)))
  }
  return kmsg.arcs
}

/** The UUID of an mdev's sysfs path (`/sys/bus/mdev/devices/UUID`). */
export const uuidOf = (sysfsdev: string): string => sysfsdev.slice(sysfsdev.lastIndexOf("/") + 1)

/** A mark in the log: what came after it, for some devices. */
export const logMark = (): { readonly since: (devices: ReadonlyArray<string>) => ReadonlyArray<LoggedArc> } => {
  const before = kernelArcs().length
  return {
    since: (devices) => {
      const uuids = new Set(devices.map(uuidOf))
      return kernelArcs()
        .slice(before)
        .filter((a) => uuids.has(a.device))
    }
  }
}

/** What mtty's own debug lines say a device's data_fd moved. */
export interface LoggedData {
  /** Bytes its `mtty_save_read` returned (`mtty_save_read read N`, errors left out). */
  readonly saved: number
  /** Bytes its `mtty_resume_write` took (`mtty_resume_write received N, total M`). */
  readonly resumed: number
  /** What `mtty_save_state` filled the saving file to, each time it ran (`filled to N`). */
  readonly filledTo: ReadonlyArray<number>
}

const dataLine =
  /mtty ([0-9a-f-]{36}): (?:mtty_save_read read (\d+)|mtty_resume_write received (\d+),|mtty_save_state filled to (\d+))/

let dataKmsg: { readonly fd: number; readonly lines: Array<string> } | undefined

/** The data lines of the kernel log so far, read through a /dev/kmsg reader of their own. */
const kernelDataLines = (): ReadonlyArray<string> => {
  dataKmsg ??= { fd: openSync("/dev/kmsg", constants.O_RDONLY | constants.O_NONBLOCK), lines: [] }
  const buf = Buffer.alloc(8192)
  for (;;) {
    let n: number
    try {
      n = readSync(dataKmsg.fd, buf, 0, buf.length, null)
    } catch (error) {
      if (error instanceof Error && "code" in error && error.code === "EPIPE") continue
      break
    }
    for (const l of buf.toString("utf8", 0, n).split("\n")) if (dataLine.test(l)) dataKmsg.lines.push(l)
  }
  return dataKmsg.lines
}

/**
 * A mark in the log for what mtty says its data_fds moved after it: per device, the bytes its
 * save reads returned and its resume writes took (mtty.c logs both with dev_dbg, which the
 * VM turns on). A failed read's negative return is printed as a huge `%zu` and left out.
 */
export const dataMark = (): { readonly since: (sysfsdev: string) => LoggedData } => {
  const before = kernelDataLines().length
  return {
    since: (sysfsdev) => {
      const uuid = uuidOf(sysfsdev)
      let saved = 0
      let resumed = 0
      const filledTo: Array<number> = []
      for (const l of kernelDataLines().slice(before)) {
        const m = dataLine.exec(l)
        if (m?.[1] !== uuid) continue
        const read = Number(m[2] ?? Number.NaN)
        if (read < 2 ** 32) saved += read
        const received = Number(m[3] ?? Number.NaN)
        if (received < 2 ** 32) resumed += received
        if (m[4] !== undefined) filledTo.push(Number(m[4]))
      }
      return { saved, resumed, filledTo }
    }
  }
}
