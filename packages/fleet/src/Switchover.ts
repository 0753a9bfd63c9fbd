import { type GroupRuntime, reportedStates, transition } from "@lockstep/coordinator"
import { MemoryTransport } from "@lockstep/stream"
import { Cause, Data, Effect, Exit, Schema } from "effect"
import type * as SqlClient from "effect/sql/SqlClient"
import { entriesOf, type FencedEntry, fenced, JournalDatabase, takeEpoch } from "./FencedJournal.js"
import { MigrationSettings } from "./FleetFile.js"
import * as HostControl from "./HostControl.js"
import type { CommitJournal } from "./MigrationPort.js"
import { migratePair } from "./MigrationPort.js"
import { NicBudget, shaped } from "./NicBudget.js"
import * as Progress from "./Progress.js"
import { attach } from "./VmDevices.js"

/**
 * One VM's switchover, as the agent of its source host runs it: an idempotent step that may
 * be run again after any crash, at any point, and always ends with the VM in one place.
 *
 * Every run first takes the VM's next fencing epoch (`FencedJournal`), attaches the VM's
 * devices on both hosts (over vfio-user; a device serves one driver at a time, so an earlier
 * attempt that still holds it delays this one rather than racing it), then settles what an
 * earlier run left, from the commit journal and the devices' real states:
 * - the newest migration is COMMITTED: roll forward (the destination group to RUNNING, the
 *   source stays halted), mark it completed;
 * - it is undecided: decide ABORT (the fence makes this the last word), then roll back;
 * - it is aborted, or nothing was recorded: roll back (the source group to RUNNING, the
 *   destination's devices reset and parked in STOP) — a no-op when nothing moved.
 * Unless it rolled forward, it then migrates the VM afresh with the migration package's two
 * sessions over an in-process channel shaped by the NIC budget, at most `maxAttempts` times
 * over all runs. The migration id is the VM key and the epoch, so no two attempts share one.
 */

/** One direction of a NIC the migration's stream crosses. */
const LinkSchema = Schema.Struct({
  host: Schema.String,
  direction: Schema.Literals(["out", "in"]),
  bytesPerSecond: Schema.Number
})

/** Everything a switchover needs, carried in its message (so a replay needs nothing else). */
export const TransferRequest = Schema.Struct({
  evacuation: Schema.String,
  vm: Schema.String,
  source: Schema.String,
  destination: Schema.String,
  /** The VM's group document. */
  document: Schema.Unknown,
  /** vfio-user socket templates of the VM's devices on each host (`{device}` = the id). */
  sourceSockets: Schema.String,
  destinationSockets: Schema.String,
  /** Control sockets of simulated hosts: when both are given, the loaded devices are verified against the source's. */
  sourceControl: Schema.optionalKey(Schema.String),
  destinationControl: Schema.optionalKey(Schema.String),
  links: Schema.Array(LinkSchema),
  /** Its place in the evacuation's start order: the NIC budget serves lower numbers first. */
  priority: Schema.Number,
  settings: MigrationSettings,
  maxAttempts: Schema.Int
})
export type TransferRequest = typeof TransferRequest.Type

/** What a committed switchover reports: the fields a migrated VM's record carries too. */
export const MigratedFields = {
  migration: Schema.String,
  /** Absent when the source never heard the destination confirm its resume. */
  downtimeMs: Schema.optionalKey(Schema.Number),
  bytes: Schema.Number,
  rounds: Schema.Number,
  attempts: Schema.Number,
  /** How an earlier run's leftovers were settled, if there were any. */
  settled: Schema.optionalKey(Schema.String)
}

/** How a switchover ended. */
export const TransferOutcome = Schema.Union([
  Schema.TaggedStruct("Migrated", MigratedFields),
  Schema.TaggedStruct("RolledBack", {
    reason: Schema.String,
    /** The source's devices are all RUNNING and the destination's parked. */
    recovered: Schema.Boolean,
    attempts: Schema.Number
  })
])
export type TransferOutcome = typeof TransferOutcome.Type

/** The key of a VM in an evacuation: what its journal entries, fence and reservation are filed under. */
export const vmKeyOf = (evacuation: string, vm: string): string => `${evacuation}/${vm}`

/** Settling what an earlier run left failed: why, as a sentence. */
class SettleFailed extends Data.TaggedError("SettleFailed")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const why = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return error instanceof Error ? error.message : String(error)
}

const all = (states: Readonly<Record<string, string>>, ok: (s: string) => boolean) => Object.values(states).every(ok)
const halted = (s: string) => s === "STOP" || s === "STOP_COPY"

/** The destination owns the VM: its group to RUNNING; the source must stay halted. */
const rollForward = (source: GroupRuntime, destination: GroupRuntime, journal: CommitJournal, entry: FencedEntry) =>
  Effect.gen(function* () {
    const before = yield* reportedStates(destination)
    if (!all(before, (s) => s === "RUNNING"))
      yield* transition(destination, "RUNNING").pipe(
        Effect.mapError((e) => new SettleFailed({ reason: `the committed destination did not resume: ${e.message}` }))
      )
    const sourceStates = yield* reportedStates(source)
    if (!all(sourceStates, halted))
      return yield* new SettleFailed({
        reason: `migration ${entry.migration} is committed but source devices are not halted (${JSON.stringify(sourceStates)})`
      })
    if (entry.status === "committed") yield* Effect.ignore(journal.complete(entry.migration))
  })

/** The source owns the VM: its group to RUNNING; the destination's devices reset where needed and parked in STOP. */
const rollBack = (source: GroupRuntime, destination: GroupRuntime) =>
  Effect.gen(function* () {
    const sourceStates = yield* reportedStates(source)
    if (!all(sourceStates, (s) => s === "RUNNING"))
      yield* transition(source, "RUNNING").pipe(
        Effect.mapError((e) => new SettleFailed({ reason: `the source did not roll back: ${e.message}` }))
      )
    const destinationStates = yield* reportedStates(destination)
    if (all(destinationStates, (s) => s === "STOP")) return
    // As the migration package parks a failed destination: every device reset (RESUMING and
    // ERROR are left only that way; a reset device has bus mastering off, so an all-RUNNING
    // start is safe to plan from), then the group to STOP under the invariant.
    yield* Effect.forEach([...destination.devices.values()], (d) => Effect.ignore(d.reset), {
      concurrency: "unbounded",
      discard: true
    })
    yield* transition(destination, "STOP").pipe(
      Effect.mapError((e) => new SettleFailed({ reason: `the destination could not be parked: ${e.message}` }))
    )
  })

/** Compares every device loaded on the destination with its source, through the hosts' control sockets. */
const verifyAgainstSource = (
  request: TransferRequest
): Effect.Effect<void, { readonly message: string }> | undefined => {
  const { sourceControl, destinationControl } = request
  if (sourceControl === undefined || destinationControl === undefined) return undefined
  const Digests = Schema.Record(Schema.String, Schema.String)
  return Effect.gen(function* () {
    const [a, b] = yield* Effect.all([
      HostControl.request(sourceControl, { op: "digests", vm: request.vm }, Digests),
      HostControl.request(destinationControl, { op: "digests", vm: request.vm }, Digests)
    ])
    const differ = Object.keys(a).filter((id) => a[id] !== b[id])
    if (differ.length > 0)
      return yield* Effect.fail({
        message: `${differ.join(", ")} on ${request.destination} differ from the source after loading`
      })
  })
}

/** Settles what an earlier run left (its newest journal entry): forward if it committed, back otherwise. */
const settleEarlier = (
  source: GroupRuntime,
  destination: GroupRuntime,
  journal: CommitJournal,
  newest: FencedEntry | undefined
) =>
  Effect.gen(function* () {
    if (newest === undefined) {
      yield* rollBack(source, destination)
      return "back" as const
    }
    let status = newest.status
    if (status === "started") {
      const decided = yield* journal
        .decide(newest.migration, "abort", "an earlier attempt stopped before deciding")
        .pipe(Effect.mapError((e) => new SettleFailed({ reason: e.message })))
      status = decided
    }
    if (status === "committed" || status === "completed") {
      yield* rollForward(source, destination, journal, newest)
      return "forward" as const
    }
    yield* rollBack(source, destination)
    return "back" as const
  })

/** What a fresh attempt needs besides the request: both sides' devices, the fenced journal, and where progress goes. */
interface Attempt {
  readonly source: GroupRuntime
  readonly destination: GroupRuntime
  readonly journal: CommitJournal
  readonly vmKey: string
  readonly epoch: number
  readonly progress: Progress.ProgressRecorder
  /** Attempts recorded before this one. */
  readonly earlier: number
  /** How an earlier run's leftovers were settled, if there were any. */
  readonly settled: string | undefined
}

/**
 * Migrates the VM afresh: the migration package's two sessions over an in-process channel
 * shaped by the NIC budget. After a failure the sides are made sure of from the devices' states.
 */
const migrateAfresh = (request: TransferRequest, attempt: Attempt) =>
  Effect.gen(function* () {
    const { source, destination, journal, vmKey, epoch, progress, settled } = attempt
    const budget = yield* NicBudget
    const [a, b] = yield* MemoryTransport.pair({ capacity: 1 << 20 })
    // From its switchover on, a VM's bytes are downtime: they go before anyone's pre-copy.
    let priority = request.priority
    const outcome = yield* migratePair(source, destination, [shaped(a, budget, request.links, () => priority), b], {
      settings: request.settings,
      journal,
      migrationId: `${vmKey}#${epoch}`,
      beforeVote: verifyAgainstSource(request),
      onEvent: (event) => {
        if (event._tag === "PhaseStarted" && event.side === "source" && event.phase === "switchover") priority = -1
        progress.onEvent(event)
      }
    })
    yield* progress.flush
    const attempts = attempt.earlier + 1
    if (outcome._tag === "Migrated")
      return {
        _tag: "Migrated",
        migration: outcome.summary.migration,
        ...(outcome.summary.downtimeMs === undefined ? {} : { downtimeMs: outcome.summary.downtimeMs }),
        bytes: outcome.summary.bytes,
        rounds: outcome.summary.rounds,
        attempts,
        ...(settled === undefined ? {} : { settled })
      } satisfies TransferOutcome
    // The sessions recovered their sides; make sure of it from the devices' own states.
    const after = yield* Effect.exit(rollBack(source, destination))
    return {
      _tag: "RolledBack",
      reason: outcome.reason,
      recovered: outcome.recovered && Exit.isSuccess(after),
      attempts
    } satisfies TransferOutcome
  })

/**
 * Runs one VM's switchover (see the module comment). Never fails: every end is an outcome, and
 * a run cut short by a crash is settled by the next.
 */
export const transfer = (
  request: TransferRequest
): Effect.Effect<TransferOutcome, never, SqlClient.SqlClient | JournalDatabase | NicBudget> =>
  Effect.scoped(
    Effect.gen(function* () {
      const journalDatabase = yield* JournalDatabase
      const vmKey = vmKeyOf(request.evacuation, request.vm)
      const epoch = yield* Effect.orDie(takeEpoch(vmKey))
      const journal = fenced(journalDatabase, vmKey, epoch)
      const progress = yield* Progress.recorder(request.evacuation, request.vm, epoch)
      const ended = (outcome: TransferOutcome) => Effect.as(progress.flush, outcome)
      const now = () => Date.now()
      // A settle-only run (the compensation) leaves the VM's status to the workflow. Until the
      // migration's first phase, the VM's step is attaching its devices on both hosts.
      progress.mark(
        request.maxAttempts > 0
          ? { status: "migrating", phase: "attach", attempts: epoch, startedAt: now(), at: now() }
          : { attempts: epoch, at: now() }
      )
      const scope = yield* Effect.scope
      const devices = yield* Effect.exit(
        Effect.all(
          [
            attach(request.document, request.sourceSockets, scope),
            attach(request.document, request.destinationSockets, scope)
          ],
          { concurrency: 2 }
        )
      )
      if (Exit.isFailure(devices))
        return yield* ended({ _tag: "RolledBack", reason: why(devices.cause), recovered: false, attempts: 0 })
      const [source, destination] = devices.value
      const entries = yield* Effect.orDie(entriesOf(vmKey))
      const newest = entries.at(-1)

      // Settle what an earlier run left.
      if (newest !== undefined) progress.mark({ phaseStart: "recover", phase: "recover", at: now() })
      const direction = yield* Effect.exit(settleEarlier(source, destination, journal, newest))
      if (newest !== undefined) progress.mark({ phaseEnd: "recover", at: now() })
      const settled =
        newest !== undefined && Exit.isSuccess(direction)
          ? `${direction.value === "forward" ? "rolled forward" : "rolled back"} migration ${newest.migration} (${newest.status}) left by an earlier run`
          : undefined
      if (Exit.isFailure(direction))
        return yield* ended({
          _tag: "RolledBack",
          reason: why(direction.cause),
          recovered: false,
          attempts: entries.length
        })
      if (direction.value === "forward" && newest !== undefined)
        return yield* ended({
          _tag: "Migrated",
          migration: newest.migration,
          downtimeMs: 0,
          bytes: 0,
          rounds: 0,
          attempts: entries.length,
          ...(settled === undefined ? {} : { settled })
        })
      if (entries.length >= request.maxAttempts)
        return yield* ended({
          _tag: "RolledBack",
          reason: `gave up after ${entries.length} attempts (last: ${newest?.reason ?? newest?.status ?? "?"})`,
          recovered: true,
          attempts: entries.length
        })
      return yield* migrateAfresh(request, {
        source,
        destination,
        journal,
        vmKey,
        epoch,
        progress,
        earlier: entries.length,
        settled
      })
    })
  )
