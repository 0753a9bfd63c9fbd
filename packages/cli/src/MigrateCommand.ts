import { GroupRuntime } from "@lockstep/coordinator"
import {
  type DestinationSummary,
  Journal,
  Migration,
  MigrationChannels,
  MigrationEvents,
  type MigrationFailed,
  MigrationJournal,
  MigrationTransport,
  migrateDestination,
  type SourceSummary
} from "@lockstep/migration"
import { memoryDigest, type SimulatedGroup } from "@lockstep/sim"
import { TcpTransport, type Transport, type TransportError } from "@lockstep/stream"
import type { Telemetry } from "@lockstep/telemetry"
import { hasVfioDevice } from "@lockstep/vfio"
import { Cause, Console, Effect, Exit, Layer, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ChannelCount, HostPort, ListenPort } from "./Address.js"
import { CliFailure, ExitCode, invalidInput, operationFailed } from "./CliFailure.js"
import { failureJson } from "./FailureReport.js"
import { formatBytes, formatMs, formatStates } from "./Format.js"
import { refuseUnsettledJournal } from "./JournalCommand.js"
import { runLocal } from "./LocalMigration.js"
import { allSinks, eventsFlag, otlpFlag, tracedDevices, withTelemetry } from "./Observability.js"
import { progressLines } from "./Progress.js"
import { refuseNotMigratable } from "./Refusal.js"
import { loadScenario, type Scenario } from "./Scenario.js"
import { destinationOptionsOf, sourceOptionsOf } from "./ScenarioOptions.js"
import { openSide, type Side, sideStates, violationsOfSide } from "./Sides.js"
import { type StopSignal, settled, signalExitCode, type UntilSignal, untilSignal } from "./Signals.js"
import { simCompatibility } from "./SimulatedSide.js"
import { sourceReportJson, sourceReportText, unconfirmedMessage } from "./SourceReport.js"
import { strangerReason, tlsStrangerReason } from "./StrayConnection.js"
import { checkTimelineFile } from "./TimelineFile.js"
import { tlsOf } from "./TlsFiles.js"

/** Every device's memory digest, as one JSON-ready record (simulated devices only: a kernel device's state is its driver's). */
const digestsOf = (side: Side): Effect.Effect<Record<string, string>> =>
  side._tag === "Simulated" ? simDigestsOf(side.runtime) : Effect.succeed({})

const simDigestsOf = (sim: SimulatedGroup): Effect.Effect<Record<string, string>> =>
  Effect.map(
    Effect.forEach([...sim.devices.values()], (d) => Effect.map(memoryDigest(d), (digest) => [d.id, digest] as const)),
    (rows) => Object.fromEntries(rows)
  )

/** P2P violations a simulated side's fabric saw; a kernel side has no fabric (the kernel's log is its record). */
/** Compatibility data: the simulated devices' sizes; kernel devices bring none (their driver checks its data). */
const compatibilityOfSide = (side: Side) => (side._tag === "Simulated" ? simCompatibility([side.runtime]) : undefined)

type Role = "source" | "destination"

/** How one side ended, for its report: the migration's exit (if it began) and the signal (if one came). */
interface SideEnd<A> {
  readonly role: Role
  readonly exit: Exit.Exit<A, MigrationFailed> | undefined
  readonly interrupted: StopSignal | undefined
  /** P2P violations the fabric saw; `undefined` for kernel devices (no fabric watches them). */
  readonly violations: number | undefined
  readonly final: Record<string, string>
}

/**
 * How one side ended: the error that stopped its run, if one did (raised again), or its exit,
 * the signal that interrupted it, the P2P violations its fabric saw and every device's state.
 */
const endOfSide = <A, B, E>(
  role: Role,
  exit: Exit.Exit<A, MigrationFailed> | undefined,
  ended: UntilSignal<B, E>,
  side: Side
): Effect.Effect<SideEnd<A>, E> =>
  Effect.gen(function* () {
    if (ended._tag === "Done" && Exit.isFailure(ended.exit)) {
      const error = Cause.findErrorOption(ended.exit.cause)
      if (Option.isSome(error)) return yield* Effect.fail(error.value)
    }
    return {
      role,
      exit,
      interrupted: ended._tag === "Interrupted" ? ended.signal : undefined,
      violations: yield* violationsOfSide(side),
      final: yield* sideStates(side)
    }
  })

const failureOf = <A>(exit: Exit.Exit<A, MigrationFailed> | undefined): MigrationFailed | undefined =>
  exit !== undefined && Exit.isFailure(exit) ? Option.getOrUndefined(Cause.findErrorOption(exit.cause)) : undefined

/** The JSON of a side that failed or was interrupted. */
const failedJson = <A>(end: SideEnd<A>): string => {
  const error = failureOf(end.exit)
  return JSON.stringify({
    ok: false,
    role: end.role,
    ...(end.interrupted === undefined ? {} : { interrupted: end.interrupted }),
    ...(error === undefined ? {} : { error: failureJson(error) }),
    violations: end.violations,
    final: end.final
  })
}

/** What a side did before a signal stopped it, and how it recovered. */
const interruptedText = <A>(end: SideEnd<A>, signal: StopSignal, waitingFor: string): string => {
  const error = failureOf(end.exit)
  const head =
    end.exit === undefined
      ? `interrupted by ${signal} while waiting for ${waitingFor}: no device was touched`
      : `interrupted by ${signal}${error === undefined ? "" : ` in ${error.phase}`}: the migration was cancelled`
  const recovery =
    error === undefined
      ? []
      : [
          `  recovery: ${
            error.recovered
              ? end.role === "source"
                ? "the source group is back in RUNNING"
                : "the destination devices were reset and parked in STOP"
              : `incomplete${error.recoveryProblem === undefined ? "" : ` (${error.recoveryProblem})`}`
          }`
        ]
  return [
    head,
    ...recovery,
    ...(end.violations === undefined ? [] : [`  P2P violations: ${end.violations}`]),
    `  ${end.role}: ${formatStates(end.final)}`
  ].join("\n")
}

/**
 * Prints a side that did not succeed (JSON on stdout, or the sentence for the handler) and
 * fails with its exit code: 128 + the signal's number when interrupted, else 1.
 */
const reportUnsuccessful = <A>(
  end: SideEnd<A>,
  json: boolean,
  waitingFor: string,
  hint: (error: MigrationFailed) => string | undefined
): Effect.Effect<never, CliFailure> =>
  Effect.gen(function* () {
    if (end.interrupted !== undefined) {
      yield* Console.log(json ? failedJson(end) : interruptedText(end, end.interrupted, waitingFor))
      return yield* new CliFailure({
        text: `interrupted by ${end.interrupted}`,
        exitCode: signalExitCode[end.interrupted],
        quiet: true
      })
    }
    const error = failureOf(end.exit)
    const text = error === undefined ? "the migration ended without a result" : error.message
    const advice = error === undefined ? undefined : hint(error)
    if (json) yield* Console.log(failedJson(end))
    return yield* new CliFailure({
      text: advice === undefined ? text : `${text}; ${advice}`,
      exitCode: 1,
      quiet: json
    })
  })

const showProgress = (json: boolean): boolean => !json && process.stderr.isTTY === true

const listenFailed = (bind: string, port: number, error: TransportError): CliFailure =>
  error.reason._tag === "TransportFailed" && error.reason.code === "EADDRINUSE"
    ? operationFailed(
        `cannot listen on ${bind}:${port}: the port is in use; stop what holds it, or choose another port (0 picks a free one)`
      )
    : error.reason._tag === "TransportFailed" && error.reason.code === "EADDRNOTAVAIL"
      ? invalidInput(`--bind: ${bind} is not an address of this host; give one of its addresses (or 0.0.0.0 for all)`)
      : operationFailed(`cannot listen on ${bind}:${port}: ${error.message}`)

/** The destination: listen, refuse strangers, take one migration, resume. */
const runDestination = (
  scenario: Scenario,
  port: number,
  bind: string,
  tls: TcpTransport.TlsOptions | undefined,
  journal: string | undefined,
  json: boolean,
  telemetry: Telemetry["Service"] | undefined
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    // A kernel group's flags come from its devices: it is checked once they are open (Sides).
    if (!hasVfioDevice(scenario.documents.destination))
      yield* refuseNotMigratable(scenario, "destination", json, { role: "destination" })
    // A destination restarted after a crash: a migration the journal leaves undecided or
    // unconfirmed is settled before this side takes another.
    if (journal !== undefined) yield* refuseUnsettledJournal(journal, "destination", ["started", "committed"], json)
    const console = yield* Console.Console
    const destination = yield* openSide(scenario, "destination")
    const listener = yield* TcpTransport.listen({ host: bind, port, ...(tls === undefined ? {} : { tls }) }).pipe(
      Effect.mapError((e) => listenFailed(bind, port, e))
    )
    yield* Console.error(`listening on ${listener.host}:${listener.port}`)
    const refuse = (from: string, reason: string) =>
      Console.error(`lockstep: refused a connection${from}: ${reason}; still waiting for the source`)
    let digests: Record<string, string> = {}
    let exit: Exit.Exit<DestinationSummary, MigrationFailed> | undefined
    const migrate = (transport: Transport) => {
      // A trace per connection: a stranger refused in the handshake is a trace of its own.
      const trace = telemetry?.trace({
        run: `lockstep migrate --listen ${scenario.file}`,
        devices: { destination: tracedDevices(destination.runtime.group) }
      })
      const onEvent = allSinks(
        showProgress(json) ? progressLines((line) => console.error(line), "destination") : undefined,
        trace?.onEvent
      )
      const session = migrateDestination(destination.runtime, transport, {
        ...destinationOptionsOf(scenario.migration),
        compatibility: compatibilityOfSide(destination),
        ...(journal === undefined ? {} : { decisionJournal: Journal.file(journal) }),
        ...(onEvent === undefined ? {} : { onEvent }),
        // The source's extra channels, if it announces any, are the listener's next connections.
        acceptChannel: listener.accept,
        beforeVote: Effect.map(digestsOf(destination), (d) => {
          digests = d
        })
      })
      return settled(session, trace, (e) => {
        exit = e
      })
    }
    /** One connection: `true` when it was a stranger, refused, and the wait goes on. */
    const one = Effect.scoped(
      Effect.gen(function* () {
        const accepted = yield* Effect.result(listener.accept)
        if (accepted._tag === "Failure") {
          const error = accepted.failure
          if (error.reason._tag !== "TlsRefused")
            return yield* operationFailed(`waiting for the source failed: ${error.message}`)
          yield* refuse("", tlsStrangerReason(error.reason))
          return true
        }
        const transport = accepted.success
        const ended = yield* migrate(transport)
        const failed = failureOf(ended)
        const stranger = failed === undefined ? undefined : strangerReason(failed)
        if (stranger === undefined) return false
        exit = undefined
        yield* refuse(` from ${transport.peer}`, stranger)
        return true
      })
    )
    const serve = Effect.gen(function* () {
      while (yield* one) {}
    })
    const ended = yield* untilSignal(
      serve,
      "the destination devices may be left between STOP and RESUMING (simulated: they end with this process); the source rolls back when the channel closes"
    )
    const end = yield* endOfSide("destination", exit, ended, destination)
    if (end.interrupted !== undefined || exit === undefined || Exit.isFailure(exit))
      return yield* reportUnsuccessful(end, json, "the source", () => undefined)
    const s = exit.value
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
            violations: end.violations,
            digests,
            final: end.final
          })
        : [
            `received migration ${s.migration}: ${formatBytes(s.bytes)}, validated in ${formatMs(s.validateMs)}, resumed in ${formatMs(s.resumeMs)}`,
            ...(end.violations === undefined ? [] : [`  P2P violations: ${end.violations}`]),
            `  destination: ${formatStates(end.final)}`
          ].join("\n")
    )
  }).pipe(Effect.scoped)

const tlsFlagsHint = "give this side --tls-cert, --tls-key and --tls-ca as well"

/** Why the source could not reach the destination, and what to do. */
const connectFailed = (
  address: { readonly host: string; readonly port: number },
  tls: boolean,
  error: TransportError
): CliFailure => {
  const at = `${address.host}:${address.port}`
  const reason = error.reason
  switch (reason._tag) {
    case "ConnectFailed":
      return operationFailed(
        reason.code === "ECONNREFUSED"
          ? `cannot reach the destination at ${at}: nothing listens there; start it first (lockstep migrate --listen ${address.port} …) and check the address`
          : `cannot reach the destination at ${at}: ${reason.reason} (${reason.code}); check the address and the network`
      )
    case "TlsRefused":
      return operationFailed(
        reason.code === "ECONNRESET"
          ? `the destination at ${at} hung up during the TLS handshake: it may listen without TLS (then drop --tls-cert, --tls-key and --tls-ca here, or give them to it too)`
          : reason.code === "PEER_REFUSED" || reason.code === "NOT_AUTHORIZED"
            ? `the destination at ${at} refused this side's certificate: give --tls-cert a certificate signed by the CA the destination trusts (its --tls-ca)`
            : `the TLS handshake with the destination at ${at} failed: ${reason.reason}; check that both sides' certificates chain to the other's --tls-ca`
      )
    case "TransportTimeout":
      return operationFailed(
        `the destination at ${at} did not complete the connection within ${reason.millis} ms${tls ? "" : " (if it listens with TLS, give this side --tls-cert, --tls-key and --tls-ca)"}`
      )
    default:
      return operationFailed(`cannot reach the destination at ${at}: ${error.message}`)
  }
}

/** A plain source whose destination hung up in the handshake may have met a TLS listener. */
const sourceHint =
  (tls: boolean) =>
  (error: MigrationFailed): string | undefined =>
    !tls && error.phase === "handshake" && error.origin === "channel"
      ? `the destination hung up before answering: if it listens with mutual TLS, ${tlsFlagsHint}`
      : undefined

/** The source: connect, migrate, stay stopped. */
const runSource = (
  scenario: Scenario,
  address: { readonly host: string; readonly port: number },
  tls: TcpTransport.TlsOptions | undefined,
  journal: string,
  json: boolean,
  telemetry: Telemetry["Service"] | undefined
): Effect.Effect<void, CliFailure> =>
  Effect.gen(function* () {
    // A kernel group's flags come from its devices: it is checked once they are open (Sides).
    if (!hasVfioDevice(scenario.documents.source))
      yield* refuseNotMigratable(scenario, "source", json, { role: "source" })
    yield* refuseUnsettledJournal(journal, "source", ["started", "committed", "completed"], json)
    const console = yield* Console.Console
    const source = yield* openSide(scenario, "source")
    let exit: Exit.Exit<SourceSummary, MigrationFailed> | undefined
    const trace = telemetry?.trace({
      run: `lockstep migrate --connect ${scenario.file}`,
      devices: { source: tracedDevices(source.runtime.group) }
    })
    const onEvent = allSinks(
      showProgress(json) ? progressLines((line) => console.error(line), "source") : undefined,
      trace?.onEvent
    )
    // The side's group, channel, journal and event sink, as the layers of `Migration.source`:
    // failing to connect is this command's failure, not the migration's.
    const connect = TcpTransport.connect({ ...address, timeout: 10_000, ...(tls === undefined ? {} : { tls }) })
    const services = Layer.mergeAll(
      Layer.succeed(GroupRuntime, source.runtime),
      Layer.effect(
        MigrationTransport,
        connect.pipe(Effect.mapError((e) => connectFailed(address, tls !== undefined, e)))
      ),
      // Extra channels (`channels` > 1) connect again the same way.
      Layer.succeed(MigrationChannels, { open: connect }),
      MigrationJournal.file(journal),
      onEvent === undefined ? Layer.empty : MigrationEvents.layer(onEvent)
    )
    const session = Migration.source({
      ...sourceOptionsOf(scenario.migration),
      compatibility: compatibilityOfSide(source)
    })
    const run = settled(session, trace, (e) => {
      exit = e
    }).pipe(Effect.provide(services))
    const ended = yield* untilSignal(
      run,
      `the source devices may be left between RUNNING and STOP_COPY (simulated: they end with this process), and the journal ${journal} may still record the migration as started ("lockstep journal show ${journal}" says; "lockstep journal resolve ${journal} --owner source" settles it)`
    )
    const end = yield* endOfSide("source", exit, ended, source)
    if (end.interrupted !== undefined || exit === undefined || Exit.isFailure(exit))
      return yield* reportUnsuccessful(end, json, "the connection to the destination", sourceHint(tls !== undefined))
    const summary = exit.value
    const report = { summary, journal, violations: end.violations, digests: yield* digestsOf(source), final: end.final }
    yield* Console.log(json ? sourceReportJson(report) : sourceReportText(report))
    // Committed, never confirmed: its own outcome. The report said it all on stdout; the
    // sentence goes to stderr too.
    if (!summary.confirmed)
      return yield* new CliFailure({
        text: unconfirmedMessage(summary.migration, journal),
        exitCode: ExitCode.committedUnconfirmed,
        printedJson: true
      })
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
      Flag.withSchema(ListenPort),
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
      Flag.withSchema(HostPort),
      Flag.withMetavar("HOST:PORT"),
      Flag.withDescription("Be the source: connect to the destination at HOST:PORT"),
      Flag.optional
    ),
    channels: Flag.String("channels").pipe(
      Flag.withSchema(ChannelCount),
      Flag.withMetavar("N"),
      Flag.withDescription(
        "Source (or --local): spread the devices over N connections, device i on connection i mod N (QEMU's multifd); overrides the scenario's \"channels\". The destination takes as many as the source announces (at most 16)"
      ),
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
    events: eventsFlag.pipe(
      Flag.withDescription(
        "With --local: write the migration's events to FILE, one JSON object a line, for lockstep timeline FILE OUT.svg"
      )
    ),
    otlp: otlpFlag,
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
      if (Option.isSome(config.events) && !config.local)
        return yield* invalidInput(
          "--events goes with --local, where both sides run in this process (a side alone can be watched with --otlp)"
        )
      if (Option.isSome(config.channels) && Option.isSome(config.listen))
        return yield* invalidInput(
          "--channels goes with --connect or --local: the destination takes as many channels as the source announces"
        )
      const tls = yield* tlsOf({ cert: config.tlsCert, key: config.tlsKey, ca: config.tlsCa })
      const loaded = yield* loadScenario(config.file)
      const scenario = Option.isNone(config.channels)
        ? loaded
        : { ...loaded, migration: { ...loaded.migration, channels: config.channels.value } }
      if (config.local) {
        if (Option.isSome(config.timeline)) yield* checkTimelineFile(config.timeline.value)
        return yield* withTelemetry(config.otlp, (telemetry) =>
          runLocal(scenario, {
            json: config.json,
            timeline: config.timeline,
            events: Option.getOrUndefined(config.events),
            telemetry
          })
        )
      }
      const journal = Option.getOrUndefined(config.journal)
      if (Option.isSome(config.listen)) {
        const port = config.listen.value
        return yield* withTelemetry(config.otlp, (telemetry) =>
          runDestination(scenario, port, config.bind, tls, journal, config.json, telemetry)
        )
      }
      // Exactly one mode was given (checked above): this side is the source.
      if (Option.isNone(config.connect)) return
      const address = config.connect.value
      return yield* withTelemetry(config.otlp, (telemetry) =>
        runSource(scenario, address, tls, journal ?? Journal.defaultJournalPath, config.json, telemetry)
      )
    })
).pipe(
  Command.withDescription(
    'Run a live migration on real time: one side as its own process over TCP (optionally mutual TLS), the destination listening and the source connecting, or both sides in this process over an in-memory channel (--local). Both build their group from the same scenario (see lockstep simulate): simulated devices, or devices bound to kernel VFIO drivers ("vfio": {"sysfsdev": …}, the destination\'s own under "destination": {"devices": …}). The source records its commit decision in a journal file (in memory with --local), and either side given one reads it first: no new migration starts while its newest migration is undecided, committed or completed (see lockstep journal). The source reports why it switched over (converged, stalled, rounds, time) and by how much the downtime missed its limit. A waiting destination refuses connections that are not a Lockstep source (a probe, a wrong certificate) and keeps waiting. On a terminal, progress goes to stderr. SIGINT or SIGTERM cancels the migration: each side rolls back, prints its final states and exits 130 or 143 (a second signal exits at once). Exits 0 on success, 1 on a failed migration, 2 on invalid input, 3 when the migration committed but the destination never confirmed that it runs (the group may run nowhere: settle it with lockstep journal), 4 when the journal must be settled first.'
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
