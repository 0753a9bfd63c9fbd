import { describe, expect, it } from "@effect/vitest"
import { VfioGroup } from "@lockstep/vfio"
import { Effect } from "effect"

describe("VfioGroup.layer", () => {
  it.effect("refuses a group with a device that is not a kernel VFIO device, naming it, before opening anything", () =>
    Effect.gen(function* () {
      const document = { devices: [{ id: "gpu0", kind: "pci", flags: ["STOP_COPY"] }] }
      const error = yield* Effect.flip(Effect.provide(Effect.void, VfioGroup.layer(document)))
      expect(error._tag).toBe("VfioDeviceInvalid")
      if (error._tag !== "VfioDeviceInvalid") return
      expect(error.path).toBe("devices[0]")
      expect(error.message).toContain("gpu0 is not a kernel VFIO device")
    })
  )
})
