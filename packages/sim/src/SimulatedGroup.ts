import type { Device } from "@lockstep/device"
import { type Group, type GroupDevice, GroupRuntime } from "@lockstep/group"
import { Context, Effect, Layer, Schema } from "effect"
import { type Fabric, makeFabric } from "./Fabric.js"
import type { P2PEdge } from "./Invariant.js"
import { type ObservedDevice, observeDevice } from "./ObservedDevice.js"
import { makeSimDevice, type SimDevice } from "./SimDevice.js"
import { SimDeviceConfig } from "./SimDeviceConfig.js"
import { type InvalidFabric, InvalidSimConfig } from "./SimError.js"

/**
 * A group of simulated devices behind a DMA fabric: a `GroupRuntime` the coordinator can drive.
 * Devices backed by something else (passed as `others`, or left out by `simulates`) are not
 * simulated: `devices` holds only the simulated ones. Those passed as `others` are wrapped
 * (`observed`) and joined to the fabric, so that the P2P invariant is checked over the whole
 * group; drive the group through `new Map([...devices, ...observed])`.
 */
export interface SimulatedGroup extends GroupRuntime {
  readonly devices: ReadonlyMap<string, SimDevice>
  /** The `others` given, wrapped so that the fabric records their transitions. */
  readonly observed: ReadonlyMap<string, ObservedDevice>
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
   * Group devices of other backends (a vfio-user client, a VMM's own), by id: not simulated,
   * but observed by the fabric like the simulated ones.
   */
  readonly others?: ReadonlyMap<string, Device> | undefined
  /**
   * Which group devices to simulate; default: every one not given in `others`. The simulator
   * reads a device's own `"sim"` block and no other backend's key: whoever owns a backend says
   * here which devices are its own (the CLI leaves out the ones a scenario backs by vfio-user).
   */
  readonly simulates?: ((device: GroupDevice) => boolean) | undefined
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
  const observed = new Map<string, ObservedDevice>()
  const ids = new Set(group.devices.map((d) => d.id))
  for (const [id, device] of options.others ?? []) {
    if (!ids.has(id) || device.id !== id)
      return yield* new InvalidSimConfig({
        device: id,
        reason: "given as another backend's device, but not this group's"
      })
    observed.set(id, yield* observeDevice(device))
  }
  for (const d of group.devices) {
    if (observed.has(d.id) || options.simulates?.(d) === false) continue
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
  const inFabric = (id: string) => devices.has(id) || observed.has(id)
  const edges: Array<P2PEdge> = []
  for (const [initiator, target] of options.edges ?? group.topology.edges())
    if (inFabric(initiator) && inFabric(target)) edges.push({ initiator, target })
  const fabric = yield* makeFabric({
    devices: [...devices.values(), ...observed.values()],
    edges,
    ...(options.writesPerSecond === undefined ? {} : { writesPerSecond: options.writesPerSecond }),
    ...(options.seed === undefined ? {} : { seed: options.seed })
  })
  return { group, devices, observed, fabric } satisfies SimulatedGroup
})

/**
 * The simulated group as a service, and its layer: `SimulatedGroup.layer(group, options)`
 * provides the group both as the `GroupRuntime` a program drives (simulated and `others` devices
 * together) and as itself (`yield* SimulatedGroup` for its fabric and devices). Swap it for
 * another backend's layer to run the same program on other devices.
 */
export const SimulatedGroup = Object.assign(Context.Service<SimulatedGroup>("@lockstep/sim/SimulatedGroup"), {
  layer: (
    group: Group,
    options: SimulateOptions = {}
  ): Layer.Layer<SimulatedGroup | GroupRuntime, InvalidSimConfig | InvalidFabric> =>
    Layer.effectContext(
      Effect.map(simulateGroup(group, options), (sim) =>
        Context.make(SimulatedGroup, sim).pipe(
          Context.add(GroupRuntime, { group, devices: new Map<string, Device>([...sim.devices, ...sim.observed]) })
        )
      )
    )
})
