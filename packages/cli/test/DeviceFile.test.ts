/*
 * The device file of `lockstep vfio-user serve --sim` is decoded by its own schema: a simulated
 * device's configuration beside an optional "pci" object. Expected lines come from the file's
 * rules: PCI ids are 16-bit, pre-copy moves at most the whole state, unknown keys are refused.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeFileSystem } from "@effect/platform-node"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { loadDeviceFile } from "../src/DeviceFile.js"

layer(NodeFileSystem.layer)("the vfio-user device file", (it) => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-device-file-"))
  const file = (name: string, doc: unknown) => {
    const path = join(dir, name)
    writeFileSync(path, JSON.stringify(doc))
    return path
  }
  /** The problem lines of a refused device file, after the heading that names it. */
  const problemsOf = (path: string) =>
    Effect.map(Effect.flip(loadDeviceFile(path)), (failure) => {
      expect(failure.exitCode).toBe(2)
      const [heading, ...lines] = failure.text.split("\n")
      expect(heading).toBe(`${path}: not a valid simulated device configuration:`)
      return lines.map((l) => l.replace(/^ {2}/, ""))
    })

  it.effect("decodes the configuration and the PCI ids apart", () =>
    Effect.gen(function* () {
      const path = file("ok.json", { stateSize: 65536, flags: ["STOP_COPY"], pci: { vendorId: 0x10de, deviceId: 1 } })
      const device = yield* loadDeviceFile(path)
      expect(device.pci).toEqual({ vendorId: 0x10de, deviceId: 1 })
      expect(device.sim.stateSize).toBe(65536)
      expect("pci" in device.sim).toBe(false)
    })
  )

  it.effect("a bad value under pci: its path, and the 16-bit range of an id", () =>
    Effect.gen(function* () {
      expect(yield* problemsOf(file("vendor.json", { pci: { vendorId: 65536, deviceId: 1 } }))).toEqual([
        "pci.vendorId: expected a value between 0 and 65535, got 65536"
      ])
    })
  )

  it.effect("an unknown key, at the top or under pci, is refused by name", () =>
    Effect.gen(function* () {
      expect(yield* problemsOf(file("top.json", { stateSize: 4096, dirtyRate: 1 }))).toEqual([
        "dirtyRate: unexpected key"
      ])
      const [line] = yield* problemsOf(file("pci.json", { pci: { vendorId: 1, deviceId: 1, vendor: 2 } }))
      expect(line).toMatch(/^pci\.vendor: unexpected key; "pci" must be \{"vendorId": 0-65535, "deviceId": 0-65535\}/)
    })
  )

  it.effect("a wrong type, and the rule across keys: pre-copy moves at most the whole state", () =>
    Effect.gen(function* () {
      expect(yield* problemsOf(file("type.json", { stateSize: "64k" }))).toEqual([
        'stateSize: expected a number, got "64k"'
      ])
      const [line] = yield* problemsOf(file("precopy.json", { stateSize: 4096, precopyInitialBytes: 8192 }))
      expect(line).toMatch(/^precopyInitialBytes: 8192 is larger than the state \(stateSize 4096\)/)
    })
  )
})
