/**
 * mtty devices as the kernel suite sees them: their guest-visible state (each port a 16550
 * UART at BAR0, and BAR1 for the second port of an mtty-2: writing THR at offset 0 pushes a
 * byte into the port's 16-byte FIFO, reading RBR at offset 0 pops one, LSR bit 0 at offset 5
 * says data is ready), and devices made inside the VM.
 */
import { readdirSync, writeFileSync } from "node:fs"
import { openVfioDevice, type VfioDevice } from "@lockstep/vfio"
import { Effect } from "effect"

/** Opens a device for the length of `f` (the kernel lets one opener bind it at a time). */
export const withDevice = <A>(sysfsdev: string, f: (device: VfioDevice) => Effect.Effect<A, unknown>): Promise<A> =>
  Effect.runPromise(
    Effect.scoped(Effect.flatMap(openVfioDevice({ sysfsdev }), f)).pipe(
      Effect.mapError((e) => new Error(e instanceof Error ? e.message : String(e)))
    )
  )

/** Pushes bytes into a port's FIFO (THR writes). */
export const pushFifo = (device: VfioDevice, port: number, bytes: ReadonlyArray<number>) =>
  Effect.forEach(bytes, (b) => device.regionWrite(port, 0n, new Uint8Array([b])), { discard: true })

/** Pops every byte a port's FIFO holds (RBR reads while LSR says data is ready). */
export const drainFifo = (device: VfioDevice, port: number) =>
  Effect.gen(function* () {
    const out: Array<number> = []
    for (let i = 0; i < 64; i++) {
      const lsr = yield* device.regionRead(port, 5n, 1)
      if (((lsr[0] ?? 0) & 1) === 0) break
      const rbr = yield* device.regionRead(port, 0n, 1)
      out.push(rbr[0] ?? -1)
    }
    return out
  })

/** The cdev of an mdev (`SYSFS/vfio-dev/vfioN`). */
export const cdevOf = (sysfsdev: string): string => {
  const name = readdirSync(`${sysfsdev}/vfio-dev`).find((e) => e.startsWith("vfio"))
  if (name === undefined) throw new Error(`${sysfsdev} has no vfio-dev entry`)
  return `/dev/vfio/devices/${name}`
}

/** Creates an mtty device of `type` with the given UUID; answers its sysfs path. */
export const createMtty = (type: "mtty-1" | "mtty-2", uuid: string): string => {
  writeFileSync(`/sys/class/mdev_bus/mtty/mdev_supported_types/${type}/create`, uuid)
  return `/sys/bus/mdev/devices/${uuid}`
}
