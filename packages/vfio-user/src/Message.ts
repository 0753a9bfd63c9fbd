import { Feature } from "@lockstep/device"
import type { State } from "@lockstep/fsm"

export { DeviceInfoFlag, Feature, FeatureOp, RegionInfoFlag } from "@lockstep/device"

/**
 * vfio-user command numbers (QEMU `docs/interop/vfio-user.rst`). Only a subset is carried
 * by this package; the others are named so that errors can say what arrived.
 */
export const Command = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  REGION_WRITE_MULTI: 15,
  DEVICE_FEATURE: 16,
  MIG_DATA_READ: 17,
  MIG_DATA_WRITE: 18
} as const

/** The name of a vfio-user command. */
export type CommandName = keyof typeof Command

const commandNames = new Map<number, CommandName>(
  (Object.keys(Command) as Array<CommandName>).map((name) => [Command[name], name])
)

/** The command with a given number, if the protocol defines one. */
export const commandOfNumber = (n: number): CommandName | undefined => commandNames.get(n)

/** How a command number reads in errors: its name, or the raw number if it has none. */
export const commandLabel = (n: number): string => commandNames.get(n) ?? `command ${n}`

/** Whether `n` is an integer from `min` to the u32 maximum: a count the protocol can carry. */
export const isCount = (n: number, min = 0): boolean => Number.isInteger(n) && n >= min && n <= 0xffff_ffff

/** Size of the header that starts every message, in bytes. */
export const HeaderSize = 16

/**
 * Header flag bits: the low 4 bits are the message type (0 command, 1 reply); `NO_REPLY`
 * asks the receiver not to answer a command; `ERROR` marks a failed reply whose `error`
 * field holds an errno.
 */
export const HeaderFlag = {
  TYPE_MASK: 0xf,
  TYPE_COMMAND: 0,
  TYPE_REPLY: 1,
  NO_REPLY: 0x10,
  ERROR: 0x20
} as const

/** The 16-byte header of every message: `u16 msg_id, u16 command, u32 size, u32 flags, u32 error`. */
export interface Header {
  readonly msgId: number
  readonly command: number
  /** Size of the whole message, header included. */
  readonly size: number
  readonly flags: number
  readonly error: number
}

/** One whole message cut from the byte stream: its header and the bytes after it. */
export interface Frame {
  readonly header: Header
  readonly payload: Uint8Array
}

/** The protocol version this package speaks: 0.2. */
export const ProtocolVersion = { major: 0, minor: 2 } as const

/** `max_data_xfer_size` a peer assumes when the other side does not state one (1 MiB). */
export const DefaultMaxDataXferSize = 1_048_576

/**
 * The largest message this package sends (header included). Some servers read a body with a
 * single `recv` and lose framing on a short read, so data is cut into messages no larger
 * than this, each sent in one socket write.
 */
export const MaxMessageSize = 65_536

/** The `data_fd` value sent with MIG_DEVICE_STATE: no file descriptor is passed over the socket. */
export const NoDataFd = 0xffff_ffff

/** Size of the kernel's `struct vfio_region_info`; asking with this `argsz` means no fd is sent. */
export const RegionInfoSize = 32

/** Size of the kernel's `struct vfio_irq_info`, the whole GET_IRQ_INFO payload. */
export const IrqInfoSize = 16

/**
 * The capabilities exchanged by VERSION (the JSON object under `"capabilities"`), with the
 * wire names converted. Absent fields take the protocol defaults.
 */
export interface Capabilities {
  /** Most file descriptors the sender can receive in one message (protocol default 1). */
  readonly maxMsgFds?: number
  /** Largest `count`/`size` of a data transfer the sender accepts (protocol default 1 MiB). */
  readonly maxDataXferSize?: number
  /** Migration capabilities; a server may state its dirty-page size. */
  readonly migration?: { readonly pgsize?: number }
  /** Twin-socket mode. This package never asks for it: it needs file descriptors. */
  readonly twinSocket?: { readonly supported?: boolean; readonly fdIndex?: number }
}

/**
 * DEVICE_FEATURE PROBE of a feature, optionally with the GET and/or SET operations: the
 * command, and its successful reply, which echoes the command's payload (`argsz`, flags, data area).
 */
export interface FeatureProbe {
  readonly _tag: "ProbeFeature"
  readonly argsz: number
  readonly feature: number
  readonly get: boolean
  readonly set: boolean
  readonly data: Uint8Array
}

/** A command this package sends or serves; the tag names the operation. */
export type Request =
  | { readonly _tag: "Version"; readonly major: number; readonly minor: number; readonly capabilities: Capabilities }
  | { readonly _tag: "DeviceGetInfo"; readonly argsz: number }
  | { readonly _tag: "GetRegionInfo"; readonly argsz: number; readonly index: number }
  | { readonly _tag: "GetIrqInfo"; readonly argsz: number; readonly index: number }
  | { readonly _tag: "RegionRead"; readonly offset: bigint; readonly region: number; readonly count: number }
  | { readonly _tag: "RegionWrite"; readonly offset: bigint; readonly region: number; readonly data: Uint8Array }
  | { readonly _tag: "DeviceReset" }
  /** DEVICE_FEATURE GET MIGRATION: the device's migration capability flags. */
  | { readonly _tag: "GetMigrationFlags"; readonly argsz: number }
  /** DEVICE_FEATURE GET MIG_DEVICE_STATE. */
  | { readonly _tag: "GetDeviceState"; readonly argsz: number }
  /** DEVICE_FEATURE SET MIG_DEVICE_STATE. */
  | { readonly _tag: "SetDeviceState"; readonly argsz: number; readonly state: State; readonly dataFd: number }
  /** DEVICE_FEATURE GET MIG_DATA_SIZE: the estimated length of the STOP_COPY data. */
  | { readonly _tag: "GetStopCopySize"; readonly argsz: number }
  /**
   * DEVICE_FEATURE PROBE of a feature, optionally with the GET and/or SET operations. The spec
   * says the data area is unused by a probe; some clients send one anyway, and the reply echoes it.
   */
  | FeatureProbe
  | { readonly _tag: "MigDataRead"; readonly argsz: number; readonly size: number }
  | { readonly _tag: "MigDataWrite"; readonly argsz: number; readonly data: Uint8Array }

/** A successful reply; the tag is the tag of the request it answers. */
export type Reply =
  | { readonly _tag: "Version"; readonly major: number; readonly minor: number; readonly capabilities: Capabilities }
  | {
      readonly _tag: "DeviceGetInfo"
      readonly argsz: number
      readonly flags: number
      readonly numRegions: number
      readonly numIrqs: number
    }
  | {
      readonly _tag: "GetRegionInfo"
      readonly argsz: number
      readonly flags: number
      readonly index: number
      readonly capOffset: number
      readonly size: bigint
      readonly offset: bigint
    }
  | {
      readonly _tag: "GetIrqInfo"
      readonly argsz: number
      readonly flags: number
      readonly index: number
      readonly count: number
    }
  | { readonly _tag: "RegionRead"; readonly offset: bigint; readonly region: number; readonly data: Uint8Array }
  | { readonly _tag: "RegionWrite"; readonly offset: bigint; readonly region: number; readonly count: number }
  | { readonly _tag: "DeviceReset" }
  | { readonly _tag: "GetMigrationFlags"; readonly flags: bigint }
  | { readonly _tag: "GetDeviceState"; readonly state: State; readonly dataFd: number }
  | { readonly _tag: "SetDeviceState"; readonly state: State; readonly dataFd: number }
  | { readonly _tag: "GetStopCopySize"; readonly length: bigint }
  /** A successful probe: the request's payload (`argsz`, flags, data area) echoed, as the spec says. */
  | FeatureProbe
  /**
   * `data` is the migration data (`size` bytes; `argsz` = 8 + `size`). `padding` counts the
   * bytes after it, up to the size asked, that some servers (libvfio-user) add and a reader
   * ignores; 0 is what the spec says.
   */
  | { readonly _tag: "MigDataRead"; readonly data: Uint8Array; readonly padding: number }
  | { readonly _tag: "MigDataWrite" }

/** The tag shared by a request and its reply. */
export type Operation = Request["_tag"]

/** The reply that answers a request with tag `T`. */
export type ReplyOf<T extends Operation> = Extract<Reply, { readonly _tag: T }>

/** A reply with the error bit: the command failed with `errno` (which may be 0 if unstated). */
export interface ErrorReply {
  readonly _tag: "ErrorReply"
  readonly command: number
  readonly errno: number
}

/** The command number that carries each operation. */
export const commandOf: Record<Operation, number> = {
  Version: Command.VERSION,
  DeviceGetInfo: Command.DEVICE_GET_INFO,
  GetRegionInfo: Command.DEVICE_GET_REGION_INFO,
  GetIrqInfo: Command.DEVICE_GET_IRQ_INFO,
  RegionRead: Command.REGION_READ,
  RegionWrite: Command.REGION_WRITE,
  DeviceReset: Command.DEVICE_RESET,
  GetMigrationFlags: Command.DEVICE_FEATURE,
  GetDeviceState: Command.DEVICE_FEATURE,
  SetDeviceState: Command.DEVICE_FEATURE,
  GetStopCopySize: Command.DEVICE_FEATURE,
  ProbeFeature: Command.DEVICE_FEATURE,
  MigDataRead: Command.MIG_DATA_READ,
  MigDataWrite: Command.MIG_DATA_WRITE
}

const featureNames = new Map<number, string>(Object.entries(Feature).map(([name, n]) => [n, name]))

/**
 * How a request reads in errors: its command, and for DEVICE_FEATURE the operation and the
 * feature (`DEVICE_FEATURE SET MIG_DEVICE_STATE`).
 */
export const requestLabel = (request: Request): string => {
  const command = commandLabel(commandOf[request._tag])
  switch (request._tag) {
    case "GetMigrationFlags":
      return `${command} GET MIGRATION`
    case "GetDeviceState":
      return `${command} GET MIG_DEVICE_STATE`
    case "SetDeviceState":
      return `${command} SET MIG_DEVICE_STATE`
    case "GetStopCopySize":
      return `${command} GET MIG_DATA_SIZE`
    case "ProbeFeature":
      return `${command} PROBE ${featureNames.get(request.feature) ?? `feature ${request.feature}`}`
    default:
      return command
  }
}

/** What a client expects a request to achieve, for errors that say what did not happen. */
export const expectationOf = (request: Request): string => {
  switch (request._tag) {
    case "Version":
      return `a VERSION reply for protocol ${request.major}.${request.minor} or an older minor`
    case "DeviceGetInfo":
      return "the device's info"
    case "GetRegionInfo":
      return `the info of region ${request.index}`
    case "GetIrqInfo":
      return `the info of interrupt index ${request.index}`
    case "RegionRead":
      return `${request.count} bytes of region ${request.region} at offset ${request.offset}`
    case "RegionWrite":
      return `${request.data.length} bytes written to region ${request.region} at offset ${request.offset}`
    case "DeviceReset":
      return "the device reset to RUNNING"
    case "GetMigrationFlags":
      return "the device's migration flags"
    case "GetDeviceState":
      return "the device's migration state"
    case "SetDeviceState":
      return `the device in ${request.state}`
    case "GetStopCopySize":
      return "the length of the device's STOP_COPY data"
    case "ProbeFeature":
      return "the feature supported"
    case "MigDataRead":
      return `up to ${request.size} bytes of migration data`
    case "MigDataWrite":
      return `${request.data.length} bytes of migration data taken`
  }
}

/** Whether `reply` answers an operation with tag `tag`. */
export const isReplyTo = <T extends Operation>(tag: T, reply: Reply): reply is ReplyOf<T> => reply._tag === tag
