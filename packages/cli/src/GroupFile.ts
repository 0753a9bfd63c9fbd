import { decodeGroup, type Group, readGroupFile } from "@lockstep/coordinator"
import { attachVfioDevices, hasVfioDevice } from "@lockstep/vfio"
import { attachVfioUserDevices } from "@lockstep/vfio-user"
import { Effect, type FileSystem } from "effect"
import { Argument } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"

/** The positional `GROUP.json` argument of the commands that read a group description. */
export const groupFileArgument = Argument.String("GROUP.json").pipe(
  Argument.withDescription(
    'A group description: {"devices":[{"id":"gpu0","kind":"pci","flags":["STOP_COPY","P2P"]},…],"topology":"shared-iommu"}'
  )
)

/**
 * Reads and decodes a group file. Every way this fails (no such file, not JSON, an invalid
 * group) is the user's to fix, so it is invalid input; an invalid group lists one
 * `file: path: reason` line per problem.
 */
export const loadGroup = (file: string): Effect.Effect<Group, CliFailure, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const raw = yield* readGroupFile(file)
    // A device backed by vfio-user or a kernel VFIO driver takes its flags from its server or
    // the kernel: attach first, then decode.
    if (hasVfioUserDevice(raw) || hasVfioDevice(raw)) {
      const served = yield* attachVfioUserDevices(raw)
      const attached = yield* attachVfioDevices(served.document)
      return yield* decodeGroup(attached.document)
    }
    return yield* decodeGroup(raw, file)
  }).pipe(
    Effect.scoped,
    Effect.mapError((error) =>
      error._tag === "VfioError"
        ? new CliFailure({ text: `${file}: ${error.message}`, exitCode: 1 })
        : invalidInput(
            error._tag === "VfioUserDeviceInvalid" || error._tag === "VfioDeviceInvalid"
              ? `${file}: ${error.message}`
              : error.message
          )
    )
  )

const hasVfioUserDevice = (doc: unknown): boolean =>
  typeof doc === "object" &&
  doc !== null &&
  "devices" in doc &&
  Array.isArray(doc.devices) &&
  doc.devices.some((d: unknown) => typeof d === "object" && d !== null && "vfioUser" in d)
