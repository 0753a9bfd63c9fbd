import { stat } from "node:fs/promises"
import { dirname } from "node:path"
import { flagNames, type State } from "@lockstep/fsm"
import { makeSimDevice } from "@lockstep/sim"
import {
  type Capabilities,
  connect,
  DeviceInfoFlag,
  type ListenFailed,
  pciConfigSpace,
  type RegionInfo,
  RegionInfoFlag,
  serve,
  type VfioUserConnectFailed,
  type VfioUserDevice
} from "@lockstep/vfio-user"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { type CliFailure, invalidInput, operationFailed } from "./CliFailure.js"
import { type DeviceFile, loadDeviceFile } from "./DeviceFile.js"

/** The id of the device `serve` exposes: it names the device in errors and seeds its memory. */
const servedDeviceId = "sim0"

/** The most regions `info` asks about: the server's count is untrusted, vfio-pci has 9. */
const maxRegions = 64

/** `VFIO_PCI_CONFIG_REGION_INDEX`. */
const pciConfigRegion = 7

/** The region names of a vfio-pci device (`VFIO_PCI_*_REGION_INDEX`). */
export const pciRegionNames: ReadonlyArray<string> = [
  "BAR0",
  "BAR1",
  "BAR2",
  "BAR3",
  "BAR4",
  "BAR5",
  "ROM",
  "CONFIG",
  "VGA"
]

const socketFlag = (description: string) =>
  Flag.String("socket").pipe(Flag.withMetavar("PATH"), Flag.withDescription(description))

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const hex4 = (n: number): string => n.toString(16).padStart(4, "0")

const formatBytes = (bytes: number): string => {
  for (const [unit, size] of [
    ["GiB", 2 ** 30],
    ["MiB", 2 ** 20],
    ["KiB", 2 ** 10]
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`
  }
  return `${bytes} bytes`
}

const listenFailed = (error: ListenFailed): CliFailure =>
  operationFailed(
    error.reason.includes("EADDRINUSE")
      ? `cannot listen on ${error.path}: the path already exists (another server's socket, or one left by a server that exited); stop that server or remove the file, or choose another path`
      : error.message
  )

/**
 * The socket's directory exists and is a directory: checked first, because binding a socket in
 * a missing directory fails with EACCES, which reads as a permission problem.
 */
const checkSocketDirectory = (socket: string): Effect.Effect<void, CliFailure> => {
  const directory = dirname(socket)
  return Effect.tryPromise({
    try: () => stat(directory),
    catch: (cause) =>
      cause instanceof Error && "code" in cause && cause.code === "ENOENT"
        ? invalidInput(
            `--socket: the directory ${directory} does not exist; create it, or give a socket path in an existing directory`
          )
        : operationFailed(`--socket: cannot use the directory ${directory}: ${reasonOf(cause)}`)
  }).pipe(
    Effect.flatMap((info) =>
      info.isDirectory()
        ? Effect.void
        : Effect.fail(invalidInput(`--socket: ${directory} is not a directory; give a socket path in a directory`))
    )
  )
}

const serveCommand = Command.make(
  "serve",
  {
    socket: socketFlag("Path of the UNIX socket to create; it is removed when the server stops"),
    sim: Flag.String("sim").pipe(
      Flag.withMetavar("DEVICE.json"),
      Flag.withDescription(
        'A simulated device configuration (JSON), e.g. {"kind":"pci","flags":["STOP_COPY","PRE_COPY"],"stateSize":65536,"arcLatencyMs":5,"pci":{"vendorId":4318,"deviceId":8752}} (default: a pci device with all three flags and default sizes; "pci" sets the vendor and device ids its config space shows)'
      ),
      Flag.optional
    ),
    padMigDataRead: Flag.Boolean("pad-mig-data-read").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        "Compatibility mode for clients built on libvfio-user, which expect every MIG_DATA_READ reply to be as long as the size they asked: pad replies with zeros to that size (argsz and size still give the real count). Off by default, as the spec says"
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const file = yield* Option.match(config.sim, {
        onNone: () => Effect.succeed<DeviceFile>({ sim: {}, pci: undefined }),
        onSome: loadDeviceFile
      })
      yield* checkSocketDirectory(config.socket)
      const device = yield* makeSimDevice(servedDeviceId, file.sim).pipe(
        Effect.mapError((error) => invalidInput(error.message))
      )
      yield* serve({
        path: config.socket,
        device,
        padMigDataRead: config.padMigDataRead,
        ...(file.pci === undefined ? {} : { configSpace: pciConfigSpace(file.pci) })
      }).pipe(Effect.mapError(listenFailed))
      const { kind, flags, stateSize } = device.config
      const extras = [
        ...(file.pci === undefined ? [] : [`PCI ids ${hex4(file.pci.vendorId)}:${hex4(file.pci.deviceId)}`]),
        ...(config.padMigDataRead ? ["MIG_DATA_READ replies padded to the size asked"] : [])
      ]
      yield* Console.log(
        `vfio-user server listening on ${config.socket}: simulated ${kind} device ${device.id}, flags ${flagNames(flags).join(", ")}, ${formatBytes(stateSize)} of state${extras.map((e) => `, ${e}`).join("")} (Ctrl-C to stop)`
      )
      return yield* Effect.never
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Serve one simulated device over vfio-user on a UNIX socket until interrupted (Ctrl-C or SIGTERM), so that vfio-user clients (lockstep vfio-user info, a VMM) can drive its migration states."
  ),
  Command.withShortDescription("Serve a simulated device on a UNIX socket until interrupted."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} --socket /tmp/gpu0.sock`, description: "A pci device with all three flags" },
    {
      command: `${commandPath.join(" ")} --socket /tmp/nic0.sock --sim nic0.json`,
      description: "A device configured by a JSON file"
    },
    {
      command: `${commandPath.join(" ")} --socket /tmp/gpu0.sock --pad-mig-data-read`,
      description: "For a client built on libvfio-user"
    }
  ])
)

/** Names of the bits set in `value`, unknown bits as one hex number. */
export const bitNames = (table: Readonly<Record<string, number>>, value: number): Array<string> => {
  const names = Object.entries(table)
    .filter(([, bit]) => (value & bit) !== 0)
    .map(([name]) => name)
  const unknown = (value & ~Object.values(table).reduce((all, bit) => all | bit, 0)) >>> 0
  return unknown === 0 ? names : [...names, `0x${unknown.toString(16)}`]
}

/** A u64 as a JSON number when it is exactly one, else as a decimal string. */
export const jsonU64 = (n: bigint): number | string => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n.toString())

/** What `info` learned about a server and its device. */
interface ServerReport {
  readonly socket: string
  readonly device: VfioUserDevice
  readonly regions: ReadonlyArray<RegionInfo>
  /** Vendor and device id from config space, when the device is PCI and its config space is readable. */
  readonly pci: { readonly vendorId: number; readonly deviceId: number } | undefined
  /** The migration state, when the server supports migration. */
  readonly state: State | undefined
}

const regionName = (report: ServerReport, region: RegionInfo): string | undefined =>
  (report.device.server.device.flags & DeviceInfoFlag.PCI) !== 0 ? pciRegionNames[region.index] : undefined

const infoJson = (report: ServerReport): string => {
  const { server } = report.device
  return JSON.stringify({
    socket: report.socket,
    version: server.version,
    capabilities: server.capabilities,
    device: {
      flags: bitNames(DeviceInfoFlag, server.device.flags),
      numRegions: server.device.numRegions,
      numIrqs: server.device.numIrqs
    },
    regions: report.regions.map((region) => {
      const name = regionName(report, region)
      return {
        index: region.index,
        ...(name === undefined ? {} : { name }),
        flags: bitNames(RegionInfoFlag, region.flags),
        size: jsonU64(region.size),
        offset: jsonU64(region.offset)
      }
    }),
    ...(report.pci === undefined ? {} : { pci: report.pci }),
    migration: {
      flags: flagNames(report.device.flags),
      state: report.state ?? null,
      ...(server.migrationError === undefined ? {} : { error: server.migrationError.message })
    }
  })
}

const formatCapabilities = (capabilities: Capabilities): string => {
  const parts = [
    capabilities.maxMsgFds === undefined ? [] : [`max_msg_fds ${capabilities.maxMsgFds}`],
    capabilities.maxDataXferSize === undefined ? [] : [`max_data_xfer_size ${capabilities.maxDataXferSize}`],
    capabilities.migration?.pgsize === undefined ? [] : [`migration pgsize ${capabilities.migration.pgsize}`],
    capabilities.twinSocket?.supported === true ? ["twin_socket"] : []
  ].flat()
  return parts.length === 0 ? "(protocol defaults)" : parts.join(", ")
}

const formatInfo = (report: ServerReport): string => {
  const { server } = report.device
  const list = (names: ReadonlyArray<string>) => (names.length === 0 ? "(none)" : names.join(", "))
  const shown = server.device.numRegions > report.regions.length ? ` (the first ${report.regions.length})` : ""
  const migration =
    server.migrationError === undefined
      ? [`migration     flags ${list(flagNames(report.device.flags))}`, `state         ${report.state ?? "?"}`]
      : [`migration     not supported (${server.migrationError.message})`]
  return [
    `socket        ${report.socket}`,
    `protocol      vfio-user ${server.version.major}.${server.version.minor}`,
    `capabilities  ${formatCapabilities(server.capabilities)}`,
    `device        flags ${list(bitNames(DeviceInfoFlag, server.device.flags))}; ${server.device.numRegions} regions${shown}, ${server.device.numIrqs} irqs`,
    ...report.regions.map((region) => {
      const label = `region ${region.index}`.padEnd(14)
      const name = (regionName(report, region) ?? "").padEnd(7)
      return `${label}${name}size ${region.size}, flags ${list(bitNames(RegionInfoFlag, region.flags))}`
    }),
    ...(report.pci === undefined ? [] : [`pci ids       ${hex4(report.pci.vendorId)}:${hex4(report.pci.deviceId)}`]),
    ...migration
  ].join("\n")
}

const connectFailed = (error: VfioUserConnectFailed): CliFailure => {
  const start = `start one with "lockstep vfio-user serve --socket ${error.path}"`
  if (error.reason.includes("ENOENT"))
    return operationFailed(`no vfio-user server at ${error.path}: the socket does not exist; ${start}`)
  if (error.reason.includes("ECONNREFUSED"))
    return operationFailed(
      `no vfio-user server at ${error.path}: the connection was refused (a socket left by a server that exited?); ${start}`
    )
  return operationFailed(error.message)
}

const infoCommand = Command.make(
  "info",
  {
    socket: socketFlag("Path of the vfio-user server's UNIX socket"),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON object: {"socket","version","capabilities","device","regions","pci":{"vendorId","deviceId"} (PCI devices),"migration":{"flags","state"}}'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const failed = (error: { readonly message: string }) => operationFailed(`${config.socket}: ${error.message}`)
      const device = yield* connect({ path: config.socket }).pipe(
        Effect.mapError((error) => (error._tag === "VfioUserConnectFailed" ? connectFailed(error) : failed(error)))
      )
      const count = Math.min(device.server.device.numRegions, maxRegions)
      const regions = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        device.regionInfo
      ).pipe(Effect.mapError(failed))
      const state =
        device.server.migrationError === undefined ? yield* device.getState.pipe(Effect.mapError(failed)) : undefined
      const config7 = regions.find((r) => r.index === pciConfigRegion)
      const readable =
        (device.server.device.flags & DeviceInfoFlag.PCI) !== 0 &&
        config7 !== undefined &&
        (config7.flags & RegionInfoFlag.READ) !== 0 &&
        config7.size >= 4n
      const ids = readable ? yield* device.regionRead(pciConfigRegion, 0n, 4).pipe(Effect.mapError(failed)) : undefined
      const pci =
        ids === undefined
          ? undefined
          : { vendorId: (ids[0] ?? 0) | ((ids[1] ?? 0) << 8), deviceId: (ids[2] ?? 0) | ((ids[3] ?? 0) << 8) }
      const report: ServerReport = { socket: config.socket, device, regions, pci, state }
      yield* Console.log(config.json ? infoJson(report) : formatInfo(report))
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Connect to a vfio-user server and print what it negotiates and exposes: protocol version and capabilities, device info, regions, migration flags and the current migration state."
  ),
  Command.withShortDescription("Print what a vfio-user server exposes and its migration state."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} --socket /tmp/gpu0.sock --json`, description: "One JSON object" }
  ])
)

/** `lockstep vfio-user …`: serve a simulated device, or inspect a server. */
export const vfioUserCommand = Command.make("vfio-user").pipe(
  Command.withDescription("Serve a simulated device over vfio-user, or inspect a vfio-user server."),
  Command.withSubcommands([serveCommand, infoCommand])
)
