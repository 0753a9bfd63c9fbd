import { createHash } from "node:crypto"
import { mkdirSync, rmSync } from "node:fs"
import * as net from "node:net"
import { decodeGroup, stop } from "@lockstep/coordinator"
import { describeViolation, memoryDigest, type SimEvent, type SimulatedGroup, simulateGroup } from "@lockstep/sim"
import { serve } from "@lockstep/vfio-user"
import { Data, Deferred, Effect, Exit, Option, Result, Schema, Scope } from "effect"
import type { Fleet } from "./FleetFile.js"
import { ControlRequest, type DeviceView, socketPath, type VmView, type WatchEvent } from "./HostControl.js"
import { onJsonLines } from "./JsonLines.js"
import { controlSocket, hostDirectory } from "./StateDirectory.js"

/**
 * A simulated host: the process-side stand-in for a machine with GPUs and the VMM that drives
 * them. It holds each of its VMs' devices as simulated devices behind their own DMA fabric
 * (the P2P invariant is checked there, whoever drives the devices), serves every device over
 * vfio-user on a socket of its own, and answers the control protocol (`HostControl`).
 *
 * Living in its own process is what makes the fleet's crash tests mean something: when the
 * orchestrator is killed, the devices stay exactly where they were (an arc in flight is
 * abandoned by the vfio-user server and leaves the device in its original state), and the
 * fabric goes on checking them until the restarted orchestrator has settled every VM.
 */

/** A VM's devices held here. */
interface Holding {
  readonly vm: string
  readonly role: "home" | "shell"
  readonly sim: SimulatedGroup
  /** Closing it stops serving the devices. */
  readonly scope: Scope.Closeable
}

/** A control request this host refuses, with the sentence to send back. */
class Refused extends Data.TaggedError("Refused")<{ readonly reason: string }> {}

const seedOf = (fleet: Fleet, vm: string): number =>
  (fleet.simulation.seed ^ createHash("sha256").update(vm).digest().readInt32LE(0)) | 0

const viewOf = (holding: Holding): Effect.Effect<VmView> =>
  Effect.gen(function* () {
    const devices: Array<DeviceView> = []
    for (const [id, device] of holding.sim.devices) {
      const status = yield* device.status
      devices.push(
        status.inFlight === undefined
          ? { id, state: status.state }
          : { id, state: status.state, inFlight: `${status.inFlight.from}>${status.inFlight.to}` }
      )
    }
    yield* holding.sim.fabric.settle
    const violations = holding.sim.fabric.violations()
    const first = violations[0]
    return {
      vm: holding.vm,
      role: holding.role,
      devices,
      violations: violations.length,
      corruptingWrites: holding.sim.fabric.corruptingWrites().length,
      writes: holding.sim.fabric.writesLanded(),
      ...(first === undefined ? {} : { firstViolation: describeViolation(first) })
    }
  })

const eventOf = (host: string, holding: Holding, event: SimEvent): WatchEvent => ({
  host,
  vm: holding.vm,
  role: holding.role,
  device: event.device,
  event: event._tag,
  state: event.state,
  ...("arc" in event ? { to: event.arc.to } : {})
})

const decodeRequest = Schema.decodeUnknownResult(ControlRequest)

/** A running simulated host. */
export interface SimulatedHostHandle {
  readonly host: string
  readonly control: string
  /** Completes when a client asks the host to stop. */
  readonly stopped: Effect.Effect<void>
}

/** A simulated host while it serves: its VMs' devices held here, the sockets watching them, its stop signal. */
interface HostServer {
  readonly fleet: Fleet
  readonly host: string
  readonly dir: string
  /** Each holding's devices are served in a scope forked from this one. */
  readonly scope: Scope.Scope
  readonly run: <A, E>(effect: Effect.Effect<A, E>) => Promise<Exit.Exit<A, E>>
  readonly holdings: Map<string, Holding>
  readonly watchers: Set<net.Socket>
  readonly stopped: Deferred.Deferred<void>
}

/** Holds `vm`'s devices here: simulated behind a fabric of their own, served over vfio-user, watched. */
const hold = (server: HostServer, vm: string, role: Holding["role"], document: unknown) =>
  Effect.gen(function* () {
    const { fleet, host, dir, scope, holdings, watchers } = server
    const group = yield* decodeGroup(document).pipe(Effect.mapError((e) => new Refused({ reason: e.message })))
    const sim = yield* simulateGroup(group, {
      seed: seedOf(fleet, vm),
      writesPerSecond: fleet.simulation.writesPerSecond,
      ...(role === "shell" ? { role: "destination" } : {})
    }).pipe(Effect.mapError((e) => new Refused({ reason: e.message })))
    // An incoming VM's devices wait stopped: nothing of it runs unless its migration commits.
    if (role === "shell")
      yield* stop(sim).pipe(
        Effect.mapError((e) => new Refused({ reason: `cannot park ${vm}'s devices: ${e.message}` }))
      )
    const own = yield* Scope.fork(scope)
    for (const [id, device] of sim.devices) {
      const path = socketPath(dir, vm, id)
      rmSync(path, { force: true })
      yield* serve({ path, device }).pipe(
        Scope.provide(own),
        Effect.mapError((e) => new Refused({ reason: `cannot serve ${vm}.${id}: ${e.message}` }))
      )
    }
    const holding: Holding = { vm, role, sim, scope: own }
    for (const device of sim.devices.values())
      device.observe((event) => {
        if (watchers.size === 0) return
        const line = `${JSON.stringify(eventOf(host, holding, event))}\n`
        for (const w of watchers) w.write(line)
      })
    holdings.set(vm, holding)
    return holding
  })

/** Lets go of a parked shell (an incoming VM whose migration did not commit); a VM living here is never released. */
const release = (server: HostServer, vm: string) =>
  Effect.gen(function* () {
    const { host, holdings } = server
    const holding = holdings.get(vm)
    if (holding === undefined) return { released: false }
    if (holding.role === "home")
      return yield* new Refused({ reason: `${vm} lives on ${host}; only a shell can be released` })
    const view = yield* viewOf(holding)
    const running = view.devices.filter((d) => d.state !== "STOP" || d.inFlight !== undefined)
    if (running.length > 0)
      return yield* new Refused({
        reason: `${vm}'s shell is not parked (${running.map((d) => `${d.id} ${d.state}`).join(", ")}); it is not released`
      })
    holdings.delete(vm)
    yield* holding.sim.fabric.detach
    yield* Scope.close(holding.scope, Exit.void)
    return { released: true }
  })

/** The answer to one control request. */
const answer = (server: HostServer, request: ControlRequest, socket: net.Socket): Effect.Effect<unknown, Refused> => {
  const { host, holdings, watchers, stopped } = server
  switch (request.op) {
    case "inventory":
      return Effect.map(Effect.forEach([...holdings.values()], viewOf), (vms) => ({ host, vms }))
    case "provision":
      return holdings.has(request.vm)
        ? Effect.succeed({ created: false })
        : Effect.as(hold(server, request.vm, "shell", request.document), { created: true })
    case "release":
      return release(server, request.vm)
    case "digests": {
      const holding = holdings.get(request.vm)
      if (holding === undefined) return Effect.fail(new Refused({ reason: `${request.vm} is not on ${host}` }))
      return Effect.map(
        Effect.forEach([...holding.sim.devices], ([id, d]) =>
          Effect.map(memoryDigest(d), (digest) => [id, digest] as const)
        ),
        (rows) => Object.fromEntries(rows)
      )
    }
    case "watch":
      return Effect.sync(() => {
        watchers.add(socket)
        socket.on("close", () => watchers.delete(socket))
        return null
      })
    case "stop":
      return Effect.as(Deferred.succeed(stopped, undefined), null)
  }
}

/** Answers a control connection: one reply line per request line, in the order the answers finish. */
const onConnection = (server: HostServer) => (socket: net.Socket) => {
  socket.on("error", () => socket.destroy())
  onJsonLines(socket, (parsed) => {
    const request = Result.isSuccess(parsed) ? decodeRequest(parsed.success) : undefined
    if (request === undefined || Result.isFailure(request)) {
      socket.write(`${JSON.stringify({ ok: false, error: "not a control request" })}\n`)
      return
    }
    void server.run(answer(server, request.success, socket)).then((exit) => {
      const reply = Exit.isSuccess(exit)
        ? { ok: true, result: exit.value }
        : { ok: false, error: Option.getOrUndefined(Exit.findErrorOption(exit))?.reason ?? "internal error" }
      if (socket.writable) socket.write(`${JSON.stringify(reply)}\n`)
    })
  })
}

/**
 * Serves simulated host `host` of `fleet` until the scope closes: its own VMs (the fleet file
 * puts them here) start RUNNING with their devices served over vfio-user; shells for incoming
 * VMs are made on request, parked in STOP.
 */
export const serveHost = (fleet: Fleet, state: string, host: string) =>
  Effect.gen(function* () {
    const dir = hostDirectory(fleet, state, host)
    const control = controlSocket(fleet, state, host)
    mkdirSync(dir, { recursive: true })
    const scope = yield* Effect.scope
    const context = yield* Effect.context<never>()
    const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromiseExitWith(context)(effect)
    const watchers = new Set<net.Socket>()
    const stopped = yield* Deferred.make<void>()
    const serving: HostServer = {
      fleet,
      host,
      dir,
      scope,
      run,
      holdings: new Map(),
      watchers,
      stopped
    }

    for (const vm of fleet.vms)
      if (vm.host === host && vm.backend === "simulated") yield* hold(serving, vm.name, "home", vm.document)

    rmSync(control, { force: true })
    yield* Effect.acquireRelease(
      Effect.callback<net.Server, Refused>((resume) => {
        const server = net.createServer(onConnection(serving))
        server.once("error", (e) =>
          resume(Effect.fail(new Refused({ reason: `cannot listen on ${control}: ${e.message}` })))
        )
        server.listen(control, () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.sync(() => {
          for (const w of watchers) w.destroy()
          server.close()
          rmSync(control, { force: true })
        })
    )
    return { host, control, stopped: Deferred.await(stopped) } satisfies SimulatedHostHandle
  })

/** The hosts of `fleet` Lockstep simulates (those without a `control` socket of their own). */
export const simulatedHosts = (fleet: Fleet): ReadonlyArray<string> =>
  fleet.hosts.filter((h) => h.control === undefined).map((h) => h.name)
