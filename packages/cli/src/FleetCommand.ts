import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs"
import { resolve } from "node:path"
import type { Fleet, FleetError, HostControl, Report } from "@lockstep/fleet"
import { renderFleetTimelineSvg } from "@lockstep/timeline"
import { Console, Effect, Exit, Fiber, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { askInventories, ensureSimulatedHosts, stopSimulatedHosts } from "./FleetHosts.js"
import { findings, type HostFindings, progressLines, summaryText, vmJson } from "./FleetReport.js"
import { checkTimelineFile } from "./TimelineFile.js"

/*
 * `lockstep fleet …`: evacuate a host of a fleet as durable workflows, follow it, and serve
 * simulated hosts. The fleet package is loaded only when a fleet command runs, so that the
 * other commands do not pay for the workflow engine.
 */

type FleetModule = typeof import("@lockstep/fleet")
const load = Effect.promise((): Promise<FleetModule> => import("@lockstep/fleet"))

const operationFailed = (text: string): CliFailure => new CliFailure({ text, exitCode: 1 })

/** Errors that stop an evacuation before anything moves, or its storage, as CLI failures. */
const explain = (e: FleetError | { readonly _tag: string; readonly message: string }): CliFailure => {
  const tag = "reason" in e && e._tag === "FleetError" ? e.reason._tag : e._tag
  return tag === "InvalidFleet"
    ? invalidInput(e.message)
    : tag === "NoCapacity" || tag === "HostUnreachable" || tag === "DevicesUnreachable"
      ? operationFailed(`${e.message}. Nothing was moved.`)
      : tag === "SqlError"
        ? operationFailed(`the fleet database failed: ${e.message}`)
        : operationFailed(e.message)
}

const fleetFile = Argument.String("FLEET.json").pipe(
  Argument.withDescription(
    'A fleet file: {"hosts":[{"name","nicBandwidth","capacity","labels"?,"control"?}],"vms":[{"name","host","group","to"?,"requires"?,"backend"?,"sockets"?}],"evacuate"?,"migration"?,"simulation"?,"schedule"?}'
  )
)
const stateFlag = Flag.String("state").pipe(
  Flag.withMetavar("DIR"),
  Flag.withDefault(".lockstep-fleet"),
  Flag.withDescription(
    "Where the embedded fleet keeps its databases (workflows, journal) and its simulated hosts' sockets"
  )
)
const postgresFlag = Flag.String("postgres").pipe(
  Flag.withMetavar("URL"),
  Flag.withDescription(
    "Run on Postgres (postgres://user:password@host:port/db), shared with other runners, instead of the embedded SQLite"
  ),
  Flag.optional
)
const hostFlag = Flag.String("host").pipe(
  Flag.withMetavar("NAME"),
  Flag.withDescription('The host to evacuate (default: the fleet file\'s "evacuate")'),
  Flag.optional
)
const jsonFlag = Flag.Boolean("json").pipe(
  Flag.withDefault(false),
  Flag.withDescription(
    'Print one JSON object and no progress: {"ok","evacuation","host","resumed","alreadyFinished","makespanMs","schedule":{"concurrency","why"},"violations","vms":[{"vm","source","destination","outcome","downtimeMs","bytes","attempts","reason","devices","violations"}]}'
  )
)

/** Reads every simulated host's inventory (devices and fabrics). */
const inspectHosts = (F: FleetModule, fleet: Fleet, state: string) =>
  Effect.gen(function* () {
    const { hosts, exits } = yield* askInventories(F, fleet, state, 5_000)
    const inventories: Array<HostControl.HostInventory> = []
    const unreachable: Array<string> = []
    for (const [i, exit] of exits.entries()) {
      if (Exit.isSuccess(exit)) inventories.push(exit.value)
      else unreachable.push(hosts[i] ?? "?")
    }
    return hosts.length === 0 ? undefined : findings(inventories, unreachable)
  })

/**
 * Redraws the progress lines on stderr every 300 ms until interrupted: each drawing first moves
 * the cursor up over the lines of the one before and clears them.
 */
const followProgress = (F: FleetModule, evacuation: string) =>
  Effect.gen(function* () {
    const console = yield* Console.Console
    let drawn = 0
    for (;;) {
      const view = yield* Effect.orElseSucceed(F.Report.view(evacuation), () => undefined)
      if (view !== undefined) {
        const lines = progressLines(view)
        console.error(`${drawn > 0 ? `\x1b[${drawn}F\x1b[J` : ""}${lines.join("\n")}`)
        drawn = lines.length
      }
      yield* Effect.sleep(300)
    }
  })

interface EvacuateOptions {
  readonly file: string
  readonly host: Option.Option<string>
  readonly state: string
  readonly json: boolean
  readonly timeline: Option.Option<string>
  readonly postgres: Option.Option<string>
  readonly runner: string
  readonly keepHosts: boolean
}

/** Plans, runs (or resumes) and reports one evacuation. */
const evacuate = (o: EvacuateOptions) =>
  Effect.gen(function* () {
    if (Option.isSome(o.timeline)) yield* checkTimelineFile(o.timeline.value)
    const F = yield* load
    const fleet = yield* F.loadFleetFile(o.file).pipe(Effect.mapError(explain))
    const host = yield* F.hostToEvacuate(fleet, Option.getOrUndefined(o.host)).pipe(Effect.mapError(explain))
    yield* ensureSimulatedHosts(F, fleet, o.file, o.state)
    const planned = yield* F.plan(fleet, host, o.state).pipe(Effect.mapError(explain))
    const runner = Option.match(o.postgres, {
      onNone: () => F.Runner.embedded(o.state),
      onSome: (url) => F.Runner.postgres({ url, runner: o.runner })
    })
    const { started, view } = yield* Effect.gen(function* () {
      const started = yield* F.startOrResume(fleet, planned, Date.now(), F.checkSourcesRun(fleet, o.state, planned))
      const progress =
        !o.json && process.stderr.isTTY === true
          ? yield* Effect.forkChild(followProgress(F, started.payload.evacuation))
          : undefined
      yield* F.run(started.payload)
      if (progress !== undefined) yield* Fiber.interrupt(progress)
      const view = yield* F.Report.view(started.payload.evacuation)
      return { started, view }
    }).pipe(Effect.provide(Layer.orDie(runner)), Effect.mapError(explain))
    if (view === undefined) return yield* operationFailed("the evacuation left no record")
    const found = yield* inspectHosts(F, fleet, o.state)
    const settled = view.vms.every((v) => v.status === "migrated" || v.status === "rolled-back")
    if (settled && !o.keepHosts) yield* stopSimulatedHosts(F, fleet, o.state)
    if (Option.isSome(o.timeline))
      writeFileSync(resolve(o.timeline.value), renderFleetTimelineSvg(F.Report.timeline(view)))
    yield* report(view, found, started, o.json, planned.schedule.why)
  })

/** Prints the outcome; fails (exit 1) unless every VM migrated and no P2P violation was seen. */
const report = (
  view: Report.EvacuationView,
  found: HostFindings | undefined,
  started: {
    readonly resumed: boolean
    readonly finishedAt?: number
    readonly payload: { readonly concurrency: number }
  },
  json: boolean,
  why: string
) =>
  Effect.gen(function* () {
    const violations = found === undefined ? 0 : Object.values(found.violations).reduce((a, b) => a + b, 0)
    const ok = view.vms.every((v) => v.status === "migrated") && violations === 0
    const alreadyFinished = started.finishedAt !== undefined
    if (json)
      yield* Console.log(
        JSON.stringify({
          ok,
          evacuation: view.evacuation.id,
          host: view.evacuation.host,
          resumed: started.resumed,
          alreadyFinished,
          makespanMs: view.makespanMs,
          schedule: { concurrency: started.payload.concurrency, why },
          violations,
          vms: view.vms.map((v) => vmJson(v, found))
        })
      )
    else {
      if (started.finishedAt !== undefined)
        yield* Console.log(
          `Evacuation ${view.evacuation.id} of host ${view.evacuation.host} had already finished (${new Date(started.finishedAt).toISOString()}): nothing moved in this run. Its outcome:`
        )
      yield* Console.log(summaryText(view, found, why))
    }
    if (!ok)
      return yield* new CliFailure({
        text:
          violations > 0
            ? "P2P violations were seen during the evacuation"
            : "some VMs were not migrated (their sources run; see above)",
        exitCode: 1,
        quiet: json
      })
  })

const timelineFlag = Flag.String("timeline").pipe(
  Flag.withMetavar("FILE.svg"),
  Flag.withDescription(
    "Also draw the evacuation as a picture (standalone SVG): a lane per VM with its phases, attempts and downtime"
  ),
  Flag.optional
)

/** `lockstep fleet evacuate FLEET.json`. */
const evacuateCommand = Command.make(
  "evacuate",
  {
    file: fleetFile,
    host: hostFlag,
    state: stateFlag,
    json: jsonFlag,
    timeline: timelineFlag,
    postgres: postgresFlag,
    runner: Flag.String("runner").pipe(
      Flag.withMetavar("NAME"),
      Flag.withDefault("cli"),
      Flag.withDescription("With --postgres: this runner's name among the runners (stable across its restarts)")
    ),
    keepHosts: Flag.Boolean("keep-hosts").pipe(
      Flag.withDefault(false),
      Flag.withDescription("Leave the simulated hosts running when the evacuation is done (they stop by default)")
    )
  },
  (config) => evacuate(config)
).pipe(
  Command.withDescription(
    "Drain a host: migrate every VM on it (each a group of P2P devices) to other hosts under the hosts' NIC bandwidth, as durable workflows. Checks the fleet file, the placement (capacity, labels) and that every host involved answers before anything moves. Embedded by default (SQLite in --state, simulated hosts started in the background); run it again after a crash and it resumes where it stopped. Prints progress on a terminal, then every VM's outcome and the P2P violations the simulated hosts saw. Exits 0 when every VM migrated, 1 when one did not (its source runs) or before anything moved, 2 on an invalid fleet file."
  ),
  Command.withShortDescription("Evacuate a host of a fleet as durable workflows."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} examples/fleet/fleet.json`, description: "Drain the host the file names" },
    {
      command: `${commandPath.join(" ")} fleet.json --json --timeline fleet.svg`,
      description: "One JSON object, and a picture"
    },
    {
      command: `${commandPath.join(" ")} fleet.json --postgres postgres://lockstep@127.0.0.1:5432/fleet --runner r1`,
      description: "Run as one of several runners sharing Postgres"
    }
  ])
)

/** `lockstep fleet status`. */
const statusCommand = Command.make(
  "status",
  {
    state: stateFlag,
    postgres: postgresFlag,
    evacuation: Flag.String("evacuation").pipe(
      Flag.withMetavar("ID"),
      Flag.withDescription("Which evacuation (default: the newest)"),
      Flag.optional
    ),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("Print one JSON object"))
  },
  (config) =>
    Effect.gen(function* () {
      const F = yield* load
      if (Option.isNone(config.postgres) && !existsSync(F.StateDirectory.databasePath(config.state)))
        return yield* operationFailed(
          `no evacuation is recorded yet in ${F.shown(resolve(config.state))}; run lockstep fleet evacuate, or give the --state (or --postgres) it ran with`
        )
      const storage = Option.match(config.postgres, {
        onNone: () => F.Runner.storageOnly({ state: config.state }),
        onSome: (url) => F.Runner.storageOnly({ url })
      })
      const view = yield* Effect.gen(function* () {
        yield* F.FleetStore.migrate
        return yield* F.Report.view(Option.getOrUndefined(config.evacuation))
      }).pipe(Effect.provide(storage), Effect.mapError(explain))
      if (view === undefined)
        return yield* operationFailed(
          Option.isSome(config.evacuation)
            ? `no evacuation ${config.evacuation.value} is recorded`
            : "no evacuation is recorded yet"
        )
      if (config.json)
        yield* Console.log(
          JSON.stringify({
            evacuation: view.evacuation.id,
            host: view.evacuation.host,
            status: view.evacuation.status,
            makespanMs: view.makespanMs,
            vms: view.vms.map((v) => vmJson(v, undefined))
          })
        )
      else yield* Console.log(summaryText(view, undefined, undefined))
    })
).pipe(
  Command.withDescription(
    "Show an evacuation (the newest by default) from the fleet's database: every VM's destination, phase or outcome, bytes, downtime and attempts. Works while it runs, from another terminal, and after."
  ),
  Command.withShortDescription("Show where an evacuation stands.")
)

/** `lockstep fleet hosts FLEET.json`: the simulated hosts, in the foreground. */
const hostsCommand = Command.make(
  "hosts",
  {
    file: fleetFile,
    state: stateFlag,
    host: Flag.String("host").pipe(
      Flag.withMetavar("NAME"),
      Flag.withDescription('Serve only this host (default: every host without its own "control" socket)'),
      Flag.optional
    )
  },
  (config) =>
    Effect.gen(function* () {
      const F = yield* load
      const fleet = yield* F.loadFleetFile(config.file).pipe(Effect.mapError(explain))
      const names = Option.match(config.host, { onNone: () => F.simulatedHosts(fleet), onSome: (h) => [h] })
      const unknown = names.filter((n) => !fleet.hosts.some((h) => h.name === n))
      if (unknown.length > 0)
        return yield* invalidInput(
          `unknown host ${unknown.join(", ")}; the fleet has ${fleet.hosts.map((h) => h.name).join(", ")}`
        )
      const handles = yield* Effect.forEach(names, (name) =>
        F.serveHost(fleet, config.state, name).pipe(
          Effect.mapError((e) => operationFailed(`host ${name}: ${e.reason}`))
        )
      )
      // The pid lets scripts and tests stop exactly this process.
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          mkdirSync(resolve(config.state), { recursive: true })
          const path = resolve(config.state, names.length === 1 ? `hosts-${names[0]}.pid` : "hosts.pid")
          writeFileSync(path, String(process.pid))
          return path
        }),
        (path) => Effect.sync(() => rmSync(path, { force: true }))
      )
      yield* Console.log(
        `serving ${handles.map((h) => `${h.host} (${F.shown(h.control)})`).join(", ")}; stop with Ctrl-C`
      )
      yield* Effect.forEach(handles, (h) => h.stopped, { concurrency: "unbounded", discard: true })
    }).pipe(Effect.scoped)
).pipe(
  Command.withDescription(
    "Serve a fleet's simulated hosts until stopped: each VM's devices simulated behind their own P2P fabric and served over vfio-user, and each host's control socket. `lockstep fleet evacuate` starts this in the background by itself; run it by hand to serve a host that has its own \"control\" socket, or to watch the hosts outlive the orchestrator."
  ),
  Command.withShortDescription("Serve a fleet's simulated hosts.")
)

/** `lockstep fleet runner`: a runner sharing Postgres. */
const runnerCommand = Command.make(
  "runner",
  {
    postgres: Flag.String("postgres").pipe(
      Flag.withMetavar("URL"),
      Flag.withDescription("The Postgres database the runners share")
    ),
    name: Flag.String("name").pipe(
      Flag.withMetavar("NAME"),
      Flag.withDescription("This runner's name: unique, and the same across its restarts")
    )
  },
  (config) =>
    Effect.gen(function* () {
      const F = yield* load
      yield* Console.log(`runner ${config.name} serving the fleet on Postgres; stop with Ctrl-C`)
      return yield* Layer.launch(Layer.orDie(F.Runner.postgres({ url: config.postgres, runner: config.name })))
    })
).pipe(
  Command.withDescription(
    "Run one of several fleet runners sharing a Postgres database: it takes a share of the hosts' agents and of the workflows, and the shares of a runner that stops. Start evacuations with `lockstep fleet evacuate --postgres URL --runner NAME` (itself a runner while it waits)."
  ),
  Command.withShortDescription("Run a fleet runner on Postgres.")
)

/** `lockstep fleet`. */
export const fleetCommand = Command.make("fleet").pipe(
  Command.withDescription(
    "Evacuate hosts: many VMs, each a group of P2P devices, migrated under the hosts' NIC budgets as durable workflows (embedded SQLite by default, Postgres to scale out)."
  ),
  Command.withShortDescription("Evacuate hosts of a fleet as durable workflows."),
  Command.withSubcommands([evacuateCommand, statusCommand, hostsCommand, runnerCommand])
)
