import { flagNames, type State } from "@lockstep/fsm"
import { type KernelRegionInfo, openVfioDevice, Uapi, type VfioDevice, type VfioPath } from "@lockstep/vfio"
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { bitNames, jsonU64, pciRegionNames } from "./VfioUserCommand.js"

/** The most regions `info` asks about: vfio-pci has 9; the device's own count is only a hint. */
const maxRegions = 64

const operationFailed = (text: string): CliFailure => new CliFailure({ text, exitCode: 1 })

const pathFlags = {
  sysfsdev: Flag.String("sysfsdev").pipe(
    Flag.withMetavar("PATH"),
    Flag.withDescription("The device's sysfs directory, as QEMU's sysfsdev=, e.g. /sys/bus/mdev/devices/UUID"),
    Flag.optional
  ),
  cdev: Flag.String("cdev").pipe(
    Flag.withMetavar("PATH"),
    Flag.withDescription("The device's VFIO cdev, /dev/vfio/devices/vfioN"),
    Flag.optional
  )
}

const pathOf = (flags: {
  readonly sysfsdev: Option.Option<string>
  readonly cdev: Option.Option<string>
}): Effect.Effect<VfioPath, CliFailure> => {
  if (Option.isSome(flags.sysfsdev) && Option.isNone(flags.cdev))
    return Effect.succeed({ sysfsdev: flags.sysfsdev.value })
  if (Option.isSome(flags.cdev) && Option.isNone(flags.sysfsdev)) return Effect.succeed({ cdev: flags.cdev.value })
  return Effect.fail(invalidInput("give exactly one of --sysfsdev PATH and --cdev /dev/vfio/devices/vfioN"))
}

/** Opens the device named by the flags for the command's scope; every failure says why. */
const open = (path: VfioPath) => openVfioDevice(path).pipe(Effect.mapError((e) => operationFailed(e.message)))

/** What `info` learned about a device. */
interface KernelReport {
  readonly device: VfioDevice
  readonly regions: ReadonlyArray<KernelRegionInfo>
  readonly state: State | undefined
  readonly stopCopyLength: number | undefined
}

const regionName = (report: KernelReport, region: KernelRegionInfo): string | undefined =>
  (report.device.info.flags & Uapi.DeviceInfoFlag.PCI) !== 0 ? pciRegionNames[region.index] : undefined

const infoJson = (report: KernelReport): string => {
  const { info } = report.device
  return JSON.stringify({
    cdev: info.cdev,
    sysfsdev: info.sysfsdev ?? null,
    driver: info.driver ?? null,
    mdevType: info.mdevType ?? null,
    device: { flags: bitNames(Uapi.DeviceInfoFlag, info.flags), numRegions: info.numRegions, numIrqs: info.numIrqs },
    regions: report.regions.map((region) => {
      const name = regionName(report, region)
      return {
        index: region.index,
        ...(name === undefined ? {} : { name }),
        flags: bitNames(Uapi.RegionInfoFlag, region.flags),
        size: jsonU64(region.size),
        offset: jsonU64(region.offset)
      }
    }),
    migration: {
      flags: flagNames(report.device.flags),
      state: report.state ?? null,
      stopCopyLength: report.stopCopyLength ?? null,
      precopyInfoV2: info.precopyInfoV2,
      ...(info.migrationError === undefined ? {} : { error: info.migrationError })
    }
  })
}

const formatInfo = (report: KernelReport): string => {
  const { info } = report.device
  const list = (names: ReadonlyArray<string>) => (names.length === 0 ? "(none)" : names.join(", "))
  const migration =
    info.migrationError === undefined
      ? [
          `migration     flags ${list(flagNames(report.device.flags))}; pre-copy info ${info.precopyInfoV2 ? "v2" : "v1"}`,
          `state         ${report.state ?? "?"}`,
          `stop-copy     ${report.stopCopyLength === undefined ? "?" : `${report.stopCopyLength} bytes`} (MIG_DATA_SIZE)`
        ]
      : [`migration     not supported (${info.migrationError})`]
  return [
    `cdev          ${info.cdev}`,
    `sysfsdev      ${info.sysfsdev ?? "?"}`,
    `driver        ${info.driver ?? "?"}${info.mdevType === undefined ? "" : ` (mdev type ${info.mdevType})`}`,
    `device        flags ${list(bitNames(Uapi.DeviceInfoFlag, info.flags))}; ${info.numRegions} regions, ${info.numIrqs} irqs`,
    ...report.regions.map((region) => {
      const label = `region ${region.index}`.padEnd(14)
      const name = (regionName(report, region) ?? "").padEnd(7)
      return `${label}${name}size ${region.size}, flags ${list(bitNames(Uapi.RegionInfoFlag, region.flags))}`
    }),
    ...migration
  ].join("\n")
}

const infoCommand = Command.make(
  "info",
  {
    ...pathFlags,
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON object: {"cdev","sysfsdev","driver","mdevType","device","regions","migration":{"flags","state","stopCopyLength","precopyInfoV2"}}'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const device = yield* open(yield* pathOf(config))
      const count = Math.min(device.info.numRegions, maxRegions)
      const regions = yield* Effect.forEach(
        Array.from({ length: count }, (_, i) => i),
        (i) => Effect.option(device.regionInfo(i))
      )
      const supported = device.info.migrationError === undefined
      const state = supported ? Option.getOrUndefined(yield* Effect.option(device.getState)) : undefined
      const stopCopyLength = supported ? Option.getOrUndefined(yield* Effect.option(device.stopCopyLength)) : undefined
      const report: KernelReport = { device, regions: regions.flatMap(Option.toArray), state, stopCopyLength }
      yield* Console.log(config.json ? infoJson(report) : formatInfo(report))
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Open a device bound to a kernel VFIO driver (through its VFIO cdev and /dev/iommu) and print what the kernel reports: device info, regions, migration flags, the migration state and the stop-copy data size. The device is not moved."
  ),
  Command.withShortDescription("Print a kernel VFIO device's flags, state and regions."),
  Command.withExamples(({ commandPath }) => [
    {
      command: `${commandPath.join(" ")} --sysfsdev /sys/bus/mdev/devices/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001 --json`,
      description: "One JSON object"
    }
  ])
)

const resetCommand = Command.make("reset", pathFlags, (config) =>
  Effect.gen(function* () {
    const device = yield* open(yield* pathOf(config))
    const before = Option.getOrUndefined(yield* Effect.option(device.getState))
    yield* device.reset.pipe(Effect.mapError((e) => operationFailed(e.message)))
    const after = yield* device.getState.pipe(Effect.mapError((e) => operationFailed(e.message)))
    yield* Console.log(`${device.info.sysfsdev ?? device.info.cdev}: reset from ${before ?? "?"}, now ${after}`)
  }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Reset a kernel VFIO device (VFIO_DEVICE_RESET): the way out of ERROR and RESUMING, and back to RUNNING from a state a crashed process left it in."
  ),
  Command.withShortDescription("Reset a kernel VFIO device to RUNNING.")
)

/** `lockstep vfio …`: inspect or reset a device bound to a kernel VFIO driver. */
export const vfioCommand = Command.make("vfio").pipe(
  Command.withDescription("Inspect or reset a device bound to a kernel VFIO driver (VFIO device cdev and iommufd)."),
  Command.withSubcommands([infoCommand, resetCommand])
)
