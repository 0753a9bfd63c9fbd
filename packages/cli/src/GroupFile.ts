import { readFile } from "node:fs/promises"
import { decodeGroup, type Group, loadGroupFile } from "@lockstep/coordinator"
import { attachVfioUserDevices } from "@lockstep/vfio-user"
import { Effect, Option } from "effect"
import { Argument } from "effect/cli"
import { type CliFailure, invalidInput } from "./CliFailure.js"

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
export const loadGroup = (file: string): Effect.Effect<Group, CliFailure> =>
  Effect.gen(function* () {
    const raw = yield* Effect.option(Effect.tryPromise(async () => JSON.parse(await readFile(file, "utf8")) as unknown))
    // A device backed by vfio-user takes its flags from its server: connect first, then decode.
    if (Option.isSome(raw) && hasVfioUserDevice(raw.value)) {
      const attached = yield* attachVfioUserDevices(raw.value)
      return yield* decodeGroup(attached.document)
    }
    return yield* loadGroupFile(file)
  }).pipe(
    Effect.scoped,
    Effect.mapError((error) =>
      invalidInput(error._tag === "VfioUserDeviceInvalid" ? `${file}: ${error.message}` : error.message)
    )
  )

const hasVfioUserDevice = (doc: unknown): boolean =>
  typeof doc === "object" &&
  doc !== null &&
  "devices" in doc &&
  Array.isArray(doc.devices) &&
  doc.devices.some((d: unknown) => typeof d === "object" && d !== null && "vfioUser" in d)
