/*
 * A VMM integrating Lockstep through its Promise facade: the VMM owns its device objects (here
 * toys that keep their state in memory) and implements `PromiseDevice` for them with plain
 * async methods; `LockstepGroup` sequences the group so that no device is stopped while a peer
 * may still write into it.
 *
 * Run it with Node 24 after `npm install` (which builds the packages): node examples/vmm-integration/main.ts
 */
import { LockstepGroup, type PromiseDevice, type TransitionEvent, TransitionFailed } from "@lockstep/coordinator"
import type { DeviceKind, PrecopyInfo, ReadResult } from "@lockstep/device"
import { type Flag, flagsOf, isArc, type State } from "@lockstep/fsm"

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const initiating: ReadonlyArray<State> = ["RUNNING", "PRE_COPY", "ERROR"]
const halted: ReadonlyArray<State> = ["STOP", "STOP_COPY", "RESUMING"]

/**
 * The VMM's view of the P2P DMA between its devices: it checks the safety rule every time a
 * device starts or ends an arc (an arc in flight counts as being in both of its states).
 */
class DmaBus {
  readonly edges: Array<[string, string]> = []
  readonly violations: Array<string> = []
  readonly devices = new Map<string, ToyDevice>()
  checks = 0

  check(): void {
    this.checks++
    for (const [initiator, target] of this.edges) {
      const a = this.devices.get(initiator)
      const b = this.devices.get(target)
      if (a === undefined || b === undefined) continue
      if (a.possibleStates().some((s) => initiating.includes(s)) && b.possibleStates().some((s) => halted.includes(s)))
        this.violations.push(`${initiator} may write into ${target} while ${target} is halted`)
    }
  }
}

/** A toy device: a state machine with arc latencies, 64 KiB of state, and an optional failing arc. */
class ToyDevice implements PromiseDevice {
  readonly id: string
  readonly kind: DeviceKind = "pci"
  readonly flags: number
  readonly #bus: DmaBus
  readonly #latencyMs: number
  readonly #memory: Uint8Array
  #state: State = "RUNNING"
  #inFlight: State | undefined
  #readOffset = 0
  #received: Array<Uint8Array> = []
  /** The next arc into this state fails, as a firmware that does not answer would. */
  failInto: State | undefined

  constructor(id: string, flags: ReadonlyArray<Flag>, latencyMs: number, bus: DmaBus) {
    this.id = id
    this.flags = flagsOf(flags)
    this.#latencyMs = latencyMs
    this.#bus = bus
    this.#memory = new Uint8Array(64 * 1024).map((_, i) => (i * 31 + id.length) & 0xff)
    bus.devices.set(id, this)
  }

  possibleStates(): ReadonlyArray<State> {
    return this.#inFlight === undefined ? [this.#state] : [this.#state, this.#inFlight]
  }

  async getState(): Promise<State> {
    return this.#state
  }

  async setState(to: State): Promise<void> {
    if (!isArc(this.flags, this.#state, to)) throw new Error(`${this.#state} → ${to} is not a single arc`)
    this.#inFlight = to
    this.#bus.check()
    await sleep(this.#latencyMs)
    this.#inFlight = undefined
    if (this.failInto === to) {
      this.failInto = undefined
      this.#bus.check()
      throw new Error(`firmware did not acknowledge ${to}`)
    }
    const saving = ["PRE_COPY", "PRE_COPY_P2P", "STOP_COPY"]
    if (!saving.includes(this.#state) && saving.includes(to)) this.#readOffset = 0
    if (to === "RESUMING") this.#received = []
    this.#state = to
    this.#bus.check()
  }

  async read(maxBytes: number): Promise<ReadResult> {
    if (this.#readOffset >= this.#memory.length)
      return this.#state === "STOP_COPY" ? { _tag: "End" } : { _tag: "NoData" }
    const data = this.#memory.slice(this.#readOffset, this.#readOffset + maxBytes)
    this.#readOffset += data.length
    return { _tag: "Chunk", data }
  }

  async write(data: Uint8Array): Promise<void> {
    this.#received.push(data)
  }

  async precopyInfo(): Promise<PrecopyInfo> {
    return { initialBytes: this.#memory.length - this.#readOffset, dirtyBytes: 0 }
  }

  async stopCopyLength(): Promise<number> {
    return this.#memory.length
  }

  async reset(): Promise<void> {
    this.#state = "RUNNING"
    this.#inFlight = undefined
    this.#bus.check()
  }
}

// The VM: two GPUs that write into each other, and a NIC that writes into both of them. The NIC
// is slow to quiesce (it drains its outstanding DMA first), so the GPUs visibly wait for it.
const bus = new DmaBus()
const all: ReadonlyArray<Flag> = ["STOP_COPY", "P2P", "PRE_COPY"]
const gpu0 = new ToyDevice("gpu0", all, 2, bus)
const gpu1 = new ToyDevice("gpu1", all, 2, bus)
const nic0 = new ToyDevice("nic0", all, 8, bus)
const document = {
  devices: [gpu0, gpu1, nic0].map((d) => ({ id: d.id, kind: d.kind, flags: [...all] })),
  topology: {
    domains: [["gpu0", "gpu1"]],
    edges: [
      ["nic0", "gpu0"],
      ["nic0", "gpu1"]
    ]
  }
}
bus.edges.push(["gpu0", "gpu1"], ["gpu1", "gpu0"], ["nic0", "gpu0"], ["nic0", "gpu1"])

let t0 = Date.now()
const onEvent = (event: TransitionEvent): void => {
  if (event._tag === "ArcDone")
    console.log(`  ${`${event.at - t0}`.padStart(3)} ms  ${event.device}: ${event.arc.from} → ${event.arc.to}`)
  if (event._tag === "RollbackBegun") console.log(`  ${`${event.at - t0}`.padStart(3)} ms  rollback begins`)
}
// The group document is checked here: an invalid one rejects with a GroupError (every path: reason).
const lockstep = await LockstepGroup.fromDocument(document, [gpu0, gpu1, nic0], { onEvent, errorPolicy: "reset" })

const states = async () => {
  const all = await Promise.all([gpu0, gpu1, nic0].map(async (d) => `${d.id}=${await d.getState()}`))
  return all.join(", ")
}

const step = async (name: string, run: () => Promise<unknown>) => {
  t0 = Date.now()
  console.log(`${name}:`)
  await run()
  console.log(`  now ${await states()}`)
}

await step("quiesce (every initiator stops starting P2P DMA)", () => lockstep.quiesce())
await step("stop (every initiator is quiesced already, so all halt at once)", () => lockstep.stop())
await step("resume (a device runs again once every device it writes into has left STOP)", () => lockstep.resume())

// The failure path: gpu1's firmware does not acknowledge STOP. The group transaction fails with a
// typed error naming the device and the arc, after rolling every device back to where it started.
gpu1.failInto = "STOP"
t0 = Date.now()
console.log("stop from RUNNING, gpu1 failing its arc into STOP (the GPUs wait for the slow NIC to quiesce):")
let outcome = "stop unexpectedly succeeded"
try {
  await lockstep.stop()
} catch (error) {
  if (!(error instanceof TransitionFailed)) throw error
  outcome = `rejected with ${error._tag}: ${error.device} failed ${error.arc?.from} → ${error.arc?.to}; rolled back: ${error.rolledBack}`
}
console.log(`  ${outcome}`)
console.log(`  now ${await states()}`)

const back = [gpu0, gpu1, nic0].every((d) => d.possibleStates().join() === "RUNNING")
console.log(`DMA bus: ${bus.checks} checks, ${bus.violations.length} P2P violations`)
for (const v of bus.violations) console.log(`  ${v}`)
if (!back || bus.violations.length > 0 || !outcome.startsWith("rejected")) process.exitCode = 1
