import { precopyWithinState, type SimDeviceConfig, SimDeviceConfigFields } from "@lockstep/sim"
import { PciIdentity } from "@lockstep/vfio-user"
import { Effect, type FileSystem, Schema } from "effect"
import type { CliFailure } from "./CliFailure.js"
import { readInputJson } from "./InputFile.js"

/*
 * The device file of `lockstep vfio-user serve --sim`: a simulated device's configuration (the
 * keys of a group file's `"sim"` block), plus an optional `"pci"` object for the config-space
 * header: `{"stateSize": 65536, "pci": {"vendorId": 4318, "deviceId": 8752}}`. Unknown keys are
 * refused rather than dropped, so that a misspelt setting does not silently fall back to its
 * default.
 */

const pciShape =
  '"pci" must be {"vendorId": 0-65535, "deviceId": 0-65535} (optionally "classCode", "revisionId", "subsystemVendorId", "subsystemId")'

/** The schema of a device file. */
export const DeviceFileDocument = Schema.Struct({
  ...SimDeviceConfigFields,
  pci: Schema.optionalKey(
    PciIdentity.annotate({
      expected: pciShape.slice('"pci" must be '.length),
      messageUnexpectedKey: `unexpected key; ${pciShape}`
    })
  )
})
  .annotate({ expected: "a simulated device's configuration (a JSON object)" })
  .check(precopyWithinState)

/** A device file: a simulated device's configuration, and optionally the PCI ids it shows. */
export interface DeviceFile {
  readonly sim: SimDeviceConfig
  readonly pci: PciIdentity | undefined
}

/** Reads a device file; everything wrong with it is the user's to fix (exit code 2). */
export const loadDeviceFile = (file: string): Effect.Effect<DeviceFile, CliFailure, FileSystem.FileSystem> =>
  readInputJson(file, "simulated device configuration", DeviceFileDocument, { onExcessProperty: "error" }).pipe(
    Effect.map(({ pci, ...sim }) => ({ sim, pci }))
  )
