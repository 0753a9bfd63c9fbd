import { readFile } from "node:fs/promises"
import {
  describeAssumedLengths,
  Journal,
  type MigrationFailed,
  migrateDestination,
  migrateSource
} from "@lockstep/migration"
import { memoryDigest, type SimulatedGroup } from "@lockstep/sim"
import { TcpTransport } from "@lockstep/stream"
import { hasVfioDevice } from "@lockstep/vfio"
import { Console, Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { CliFailure, invalidInput } from "./CliFailure.js"
import { failureJson } from "./FailureReport.js"
import { runLocal } from "./LocalMigration.js"
import { refuseNotMigratable } from "./Refusal.js"
import {
  destinationOptionsOf,
  formatBytes,
  formatMs,
  formatStates,
  loadScenario,
  type Scenario,
  simCompatibility,
  sourceOptionsOf,
  violationsOf
} from "./Scenario.js"
import { openSide, type Side, sideStates } from "./Sides.js"

const operationFailed = (text: string): CliFailure => new CliFailure({ text, exitCode: 1 })

/** Every device's memory digest, as one JSON-ready record (simulated devices only: a kernel device's state is its driver's). */
const digestsOf = (side: Side): Effect.Effect<Record<string, string>> =>
  side._tag === "Simulated" ? simDigestsOf(side.runtime) : Effect.succeed({})

const simDigestsOf = (sim: SimulatedGroup): Effect.Effect<Record<string, string>> =>
  Effect.map(
    Effect.forEach([...sim.devices.values()], (d) => Effect.map(memoryDigest(d), (digest) => [d.id, digest] as const)),
    (rows) => Object.fromEntries(rows)
  )

/** P2P violations a simulated side's fabric saw; a kernel side has no fabric (the kernel's log is its record). */
const violationsOfSide = (side: Side): Effect.Effect<number | undefined> =>
  side._tag === "Simulated" ? violationsOf(side.runtime) : Effect.succeed(undefined)

/** Compatibility data: the simulated devices' sizes; kernel devices bring none (their driver checks its data). */
const compatibilityOfSide = (side: Side) => (side._tag === "Simulated" ? simCompatibility([side.runtime]) : undefined)

const parsePort = (text: string): Effect.Effect<number, CliFailure> => {
  const port = Number(text)
  return Number.isInteger(port) && port >= 0 && port <= 65535 && text.trim() !== ""
    ? Effect.succeed(port)
    : Effect.fail(invalidInput(`--listen: "${text}" is not a port (0-65535; 0 picks a free one)`))
}

const parseAddress = (text: string): Effect.Effect<{ readonly host: string; readonly port: number }, CliFailure> => {
  const at = text.lastIndexOf(":")
  const host = text.slice(0, at).replace(/^\[(.*)\]$/, "$1")
  const port = Number(text.slice(at + 1))
  return at > 0 && host !== "" && Number.isInteger(port) && port > 0 && port <= 65535
    ? Effect.succeed({ host, port })
    : Effect.fail(invalidInput(`--connect: "${text}" is not HOST:PORT`))
}

const readPem = (flag: string, file: string): Effect.Effect<string, CliFailure> =>
  Effect.tryPromise({
    try: () => readFile(file, "utf8"),
    catch: (cause) =>
      invalidInput(`${flag}: cannot read ${file}: ${cause instanceof Error ? cause.message : String(cause)}`)
  })

interface TlsFlags {
  readonly cert: Option.Option<string>
  readonly key: Option.Option<string>
  readonly ca: Option.Option<string>
}

/** Mutual TLS from the three flags: all of them, or none. */
const tlsOf = (flags: TlsFlags): Effect.Effect<TcpTransport.TlsOptions | undefined, CliFailure> => {
  const given = [flags.cert, flags.key, flags.ca].filter(Option.isSome).length
  if (given === 0) return Effect.succeed(undefined)
  if (given < 3 || Option.isNone(flags.cert) || Option.isNone(flags.key) || Option.isNone(flags.ca))
    return Effect.fail(invalidInput("mutual TLS needs all three of --tls-cert, --tls-key and --tls-ca"))
  const { cert, key, ca } = { cert: flags.cert.value, key: flags.key.value, ca: flags.ca.value }
  return Effect.all({ cert: readPem("--tls-cert", cert), key: readPem("--tls-key", key), ca: readPem("--tls-ca", ca) })
}

const failedJson = (role: "source" | "destination", error: MigrationFailed, violations: number | undefined) =>
  JSON.stringify({
    ok: false,
    role,
    error: failureJson(error),
    violations,
    final: error.states
  })

/** The destination: listen, take one migration, resume. */
const runDestination = (
  scenario: Scenario,
  port: number,
  bind: string,
  tls: TcpTransport.TlsOptions | undefined,
  journal: string | undefined,
  json: boolean
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    // A kernel group's flags come from its devices: it is checked once they are open (Sides).
    if (!hasVfioDevice(scenario.documents.destination))
      yield* refuseNotMigratable(scenario, "destination", json, { role: "destination" })
    const destination = yield* openSide(scenario, "destination")
    const listener = yield* TcpTransport.listen({ host: bind, port, ...(tls === undefined ? {} : { tls }) }).pipe(
      Effect.mapError((e) => operationFailed(`cannot listen on ${bind}:${port}: ${e.message}`))
    )
    yield* Console.error(`listening on ${listener.host}:${listener.port}`)
    const transport = yield* listener.accept.pipe(
      Effect.mapError((e) => operationFailed(`no source connected: ${e.message}`))
    )
    let digests: Record<string, string> = {}
    const result = yield* Effect.result(
      migrateDestination(destination.runtime, transport, {
        ...destinationOptionsOf(scenario.migration),
        compatibility: compatibilityOfSide(destination),
        ...(journal === undefined ? {} : { decisionJournal: Journal.file(journal) }),
        beforeVote: Effect.map(digestsOf(destination), (d) => {
          digests = d
        })
      })
    )
    const violations = yield* violationsOfSide(destination)
    if (result._tag === "Failure") {
      const error = result.failure
      yield* json
        ? Console.log(failedJson("destination", error, violations))
        : Console.error(`lockstep: ${error.message}`)
      return yield* new CliFailure({ text: error.message, exitCode: 1, quiet: true })
    }
    const s = result.success
    const final = yield* sideStates(destination)
    yield* Console.log(
      json
        ? JSON.stringify({
            ok: true,
            role: "destination",
            migration: s.migration,
            bytes: s.bytes,
            validateMs: s.validateMs,
            resumeMs: s.resumeMs,
            decidedFromJournal: s.decidedFromJournal,
            violations,
            digests,
            final
          })
        : [
            `received migration ${s.migration}: ${formatBytes(s.bytes)}, validated in ${formatMs(s.validateMs)}, resumed in ${formatMs(s.resumeMs)}`,
            ...(violations === undefined ? [] : [`  P2P violations: ${violations}`]),
            `  destination: ${formatStates(final)}`
          ].join("\n")
    )
  }).pipe(Effect.scoped)

/** The source: connect, migrate, stay stopped. */
const runSource = (
  scenario: Scenario,
  address: { readonly host: string; readonly port: number },
  tls: TcpTransport.TlsOptions | undefined,
  journal: string,
  json: boolean
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    // A kernel group's flags come from its devices: it is checked once they are open (Sides).
    if (!hasVfioDevice(scenario.documents.source))
      yield* refuseNotMigratable(scenario, "source", json, { role: "source" })
    const source = yield* openSide(scenario, "source")
    const transport = yield* TcpTransport.connect({
      ...address,
      timeout: 10_000,
      ...(tls === undefined ? {} : { tls })
    }).pipe(Effect.mapError((e) => operationFailed(`cannot reach the destination: ${e.message}`)))
    const result = yield* Effect.result(
      migrateSource(source.runtime, transport, {
        ...sourceOptionsOf(scenario.migration),
        compatibility: compatibilityOfSide(source),
        journal: Journal.file(journal)
      })
    )
    const violations = yield* violationsOfSide(source)
    if (result._tag === "Failure") {
      const error = result.failure
      yield* json ? Console.log(failedJson("source", error, violations)) : Console.error(`lockstep: ${error.message}`)
      return yield* new CliFailure({ text: error.message, exitCode: 1, quiet: true })
    }
    const s = result.success
    const final = yield* sideStates(source)
    const digests = yield* digestsOf(source)
    const assumed = describeAssumedLengths(s.assumedStopCopyLengths)
    yield* Console.log(
      json
        ? JSON.stringify({
            ok: true,
            role: "source",
            migration: s.migration,
            rounds: s.rounds,
            bytes: s.bytes,
            downtimeMs: s.downtimeMs,
            confirmed: s.confirmed,
            ...(s.assumedStopCopyLengths.length === 0 ? {} : { assumedStopCopyLengths: s.assumedStopCopyLengths }),
            violations,
            digests,
            final
          })
        : [
            `migrated ${s.migration}: ${s.rounds} pre-copy rounds, ${formatBytes(s.bytes)}, downtime ${formatMs(s.downtimeMs)}${s.confirmed ? "" : " (the destination did not confirm)"}`,
            ...(assumed === undefined ? [] : [`  ${assumed}`]),
            ...(violations === undefined ? [] : [`  P2P violations: ${violations}`]),
            `  source: ${formatStates(final)}`
          ].join("\n")
    )
  }).pipe(Effect.scoped)

const pemFlag = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withMetavar("PEM"), Flag.withDescription(description), Flag.optional)

/** `lockstep migrate`: one side of a migration between simulated groups, as its own process, over TCP. */
export const migrateCommand = Command.make(
  "migrate",
  {
    file: Argument.String("SCENARIO.json").pipe(
      Argument.withDescription(
        "The scenario both sides read (see lockstep simulate); each side builds its own group from it"
      )
    ),
    local: Flag.Boolean("local").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        "Run both sides in this process over an in-memory channel (same-host migration, as QEMU tests it): the scenario's source devices into its destination devices"
      )
    ),
    timeline: Flag.String("timeline").pipe(
      Flag.withMetavar("FILE.svg"),
      Flag.withDescription("With --local: also draw the run as a timeline picture (standalone SVG)"),
      Flag.optional
    ),
    listen: Flag.String("listen").pipe(
      Flag.withMetavar("PORT"),
      Flag.withDescription("Be the destination: listen on PORT (0 picks a free one; the port is printed on stderr)"),
      Flag.optional
    ),
    bind: Flag.String("bind").pipe(
      Flag.withMetavar("HOST"),
      Flag.withDescription("The address the destination binds"),
      Flag.withDefault("127.0.0.1")
    ),
    connect: Flag.String("connect").pipe(
      Flag.withMetavar("HOST:PORT"),
      Flag.withDescription("Be the source: connect to the destination at HOST:PORT"),
      Flag.optional
    ),
    tlsCert: pemFlag("tls-cert", "This side's certificate (mutual TLS; with --tls-key and --tls-ca)"),
    tlsKey: pemFlag("tls-key", "This side's private key"),
    tlsCa: pemFlag("tls-ca", "The CA the peer's certificate must chain to"),
    journal: Flag.String("journal").pipe(
      Flag.withMetavar("PATH"),
      Flag.withDescription(
        "Source: where the commit decision is recorded (default lockstep-journal.json). Destination: the source's journal, if this host can read it; consulted only if the channel is lost after the vote"
      ),
      Flag.optional
    ),
    json: Flag.Boolean("json").pipe(
      Flag.withDefault(false),
      Flag.withDescription(
        'Print one JSON object: {"ok":true,"role":…,"bytes":…,"violations":0,"digests":{id: memory digest},"final":{id: state},…}'
      )
    )
  },
  (config) =>
    Effect.gen(function* () {
      const modes = [config.local, Option.isSome(config.listen), Option.isSome(config.connect)].filter((m) => m)
      if (modes.length !== 1)
        return yield* invalidInput(
          "give exactly one of --local (both sides here), --listen PORT (destination) and --connect HOST:PORT (source)"
        )
      if (Option.isSome(config.timeline) && !config.local)
        return yield* invalidInput("--timeline goes with --local, where both sides run in this process")
      const tls = yield* tlsOf({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa })
      const scenario = yield* loadScenario(config.file)
      if (config.local) return yield* runLocal(scenario, { json: config.json, timeline: config.timeline })
      const journal = Option.getOrUndefined(config.journal)
      if (Option.isSome(config.listen)) {
        const port = yield* parsePort(config.listen.value)
        return yield* runDestination(scenario, port, config.bind, tls, journal, config.json)
      }
      const address = yield* parseAddress(Option.getOrElse(config.connect, () => ""))
      return yield* runSource(scenario, address, tls, journal ?? Journal.defaultJournalPath, config.json)
    })
).pipe(
  Command.withDescription(
    'Run a live migration on real time: one side as its own process over TCP (optionally mutual TLS), the destination listening and the source connecting, or both sides in this process over an in-memory channel (--local). Both build their group from the same scenario (see lockstep simulate): simulated devices, or devices bound to kernel VFIO drivers ("vfio": {"sysfsdev": …}, the destination\'s own under "destination": {"devices": …}). The source records its commit decision in a journal file (in memory with --local). Exits 0 on success, 1 on a failed migration, 2 on invalid input.'
  ),
  Command.withShortDescription("Run a migration on real time: both sides here, or one side over TCP."),
  Command.withExamples(({ commandPath }) => [
    { command: `${commandPath.join(" ")} --local scenario.json --json`, description: "Both sides in this process" },
    { command: `${commandPath.join(" ")} --listen 7300 scenario.json`, description: "The destination" },
    {
      command: `${commandPath.join(" ")} --connect 127.0.0.1:7300 --journal /var/lib/lockstep/journal.json scenario.json`,
      description: "The source"
    }
  ])
)
