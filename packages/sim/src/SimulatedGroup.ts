import type { Group, GroupRuntime } from "@lockstep/coordinator"
import { Effect, Schema } from "effect"
import { type Fabric, makeFabric } from "./Fabric.js"
import type { P2PEdge } from "./Invariant.js"
import { makeSimDevice, type SimDevice } from "./SimDevice.js"
import { SimDeviceConfig } from "./SimDeviceConfig.js"
import { InvalidSimConfig } from "./SimError.js"

/**
 * A group of simulated devices behind a DMA fabric: a `GroupRuntime` the coordinator can drive.
 * Devices backed by something else (a `"vfioUser"` key) are not simulated: `devices` holds only
 * the simulated ones, and the fabric only the edges between them; merge the other backends'
 * devices into the runtime yourself.
 */
export interface SimulatedGroup extends GroupRuntime {
  readonly devices: ReadonlyMap<string, SimDevice>
  readonly fabric: Fabric
}

/** Options for `simulateGroup`. */
export interface SimulateOptions {
  /** P2P writes per second on every edge whose initiator is initiating. Default: the fabric's. */
  readonly writesPerSecond?: number | undefined
  /** Seed of the fabric and default seed of every device. Default 0. */
  readonly seed?: number | undefined
  /** Simulation parameters for devices that give none of their own under `"sim"`. */
  readonly defaults?: SimDeviceConfig | undefined
  /** A suffix for device memory seeds, so a destination group can differ from its source. */
  readonly role?: string | undefined
  /**
   * The fabric's P2P edges, `[initiator, target]`. Default: the group's topology. Tests give the
   * edges their reference model derives from the group description, so that the fabric judging
   * the coordinator does not take its edges from the coordinator.
   */
  readonly edges?: Iterable<readonly [initiator: string, target: string]> | undefined
}

const decodeSim = Schema.decodeUnknownEffect(SimDeviceConfig)

/**
 * Builds one simulated device per group device (kind and flags from the group, the rest from
 * the device's `"sim"` key over `defaults`) and a fabric over the group's P2P edges (or
 * `options.edges`). A `"sim"`
 * key that declares a kind or flags different from the group's is invalid input.
 */
export const simulateGroup = Effect.fn("Sim.simulateGroup")(function* (group: Group, options: SimulateOptions = {}) {
  const devices = new Map<string, SimDevice>()
  for (const d of group.devices) {
    if (d.vfioUser !== undefined) continue
    const own =
      d.sim === undefined
        ? {}
        : yield* decodeSim(d.sim).pipe(
            Effect.mapError((e) => new InvalidSimConfig({ device: d.id, reason: e.message }))
          )
    if (own.kind !== undefined && own.kind !== d.kind)
      return yield* new InvalidSimConfig({
        device: d.id,
        reason: `sim.kind "${own.kind}" disagrees with kind "${d.kind}"`
      })
    if (own.flags !== undefined && own.flags !== d.flags)
      return yield* new InvalidSimConfig({ device: d.id, reason: "sim.flags disagrees with the device's flags" })
    const config: SimDeviceConfig = {
      seed: options.seed ?? 0,
      ...options.defaults,
      ...own,
      kind: d.kind,
      flags: d.flags
    }
    devices.set(d.id, yield* makeSimDevice(d.id, config))
  }
  const edges: Array<P2PEdge> = []
  for (const [initiator, target] of options.edges ?? group.topology.edges())
    if (devices.has(initiator) && devices.has(target)) edges.push({ initiator, target })
  const fabric = yield* makeFabric({
    devices: devices.values(),
    edges,
    ...(options.writesPerSecond === undefined ? {} : { writesPerSecond: options.writesPerSecond }),
    ...(options.seed === undefined ? {} : { seed: options.seed })
  })
  return { group, devices, fabric } satisfies SimulatedGroup
})
