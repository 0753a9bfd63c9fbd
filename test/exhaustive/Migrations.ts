import type { ErrorPolicy } from "@lockstep/coordinator"
import type { State } from "@lockstep/fsm"
import { Journal, MigrationFailed } from "@lockstep/migration"
import type { Fault } from "@lockstep/sim"
import { type Transport, TransportError } from "@lockstep/stream"
import { Cause, Effect, Exit, Option } from "effect"
import {
  assertNeverBothRun,
  type GroupDoc,
  makePair,
  migrate,
  type Outcome,
  type Pair,
  pairWith,
  statesOf
} from "../../packages/migration/test/Harness.js"
import { isOrderingViolation, leftovers } from "../fuzz/Oracle.js"
import type { ModelDevice, ModelTopology } from "../model/Model.js"
import { expectedAfterMigration, type ModelGroup, modelGroup } from "../model/Model.js"

/**
 * One migration between two simulated groups, perturbed (faults on either side, the channel cut
 * after a number of messages in one direction), and judged against the reference model: both sides
 * end, each with a summary or one `MigrationFailed`; the journal names one owner, and every device
 * of both groups is where the model puts it for that owner; a committed migration's destination
 * holds its source's state; the groups never both run; the fabric on each side saw no ordering
 * violation; no data session is left open.
 */

/** A group of a migration scenario, as both sides have it. */
export interface MigrationGroup {
  readonly devices: ReadonlyArray<ModelDevice & { readonly sim?: Record<string, unknown> }>
  readonly topology: ModelTopology
}

/** How one migration is perturbed. */
export interface Perturbation {
  readonly source?: Readonly<Record<string, ReadonlyArray<Fault>>>
  readonly destination?: Readonly<Record<string, ReadonlyArray<Fault>>>
  /** Cut the channel once this many messages went out in that direction. */
  readonly cut?: { readonly direction: "source" | "destination"; readonly after: number } | undefined
  readonly policy?: ErrorPolicy
  readonly precopy?: boolean
  readonly arcConcurrency?: number | undefined
  /** Whether the destination can read and write the source's journal (default: yes, as on one host). */
  readonly sharedJournal?: boolean
}

/** Messages (writes) each side sent. */
export interface Messages {
  source: number
  destination: number
}

/**
 * The transport cut once `limit` messages (writes) went out through it: that write fails and the
 * whole channel closes, as a pulled cable or a killed peer would. Counts every message in `count`.
 */
export const cutAfterMessages = (
  transport: Transport,
  limit: number | undefined,
  count: (n: number) => void
): Transport => {
  let sent = 0
  const cut = Effect.andThen(
    transport.close,
    Effect.fail(
      TransportError.transportClosed({ operation: "write", by: "local", reason: `cut after message ${limit}` })
    )
  )
  return {
    ...transport,
    write: (chunks) =>
      Effect.suspend(() => {
        if (limit !== undefined && sent >= limit) return cut
        sent++
        count(sent)
        return transport.write(chunks)
      }),
    end: Effect.suspend(() => (limit !== undefined && sent >= limit ? cut : transport.end))
  }
}

const docOf = (g: MigrationGroup, faults: Readonly<Record<string, ReadonlyArray<Fault>>> | undefined): GroupDoc => ({
  devices: g.devices.map((d) => ({
    id: d.id,
    kind: d.kind,
    flags: (["STOP_COPY", "P2P", "PRE_COPY"] as const).filter((_, i) => (d.flags & (1 << i)) !== 0),
    sim: {
      stateSize: 2048,
      pageSize: 512,
      arcLatencyMs: 1,
      dirtyBytesPerSecond: 4096,
      ...d.sim,
      faults: faults?.[d.id] ?? []
    }
  })),
  topology: g.topology
})

/** What one migration did and what broke. */
export interface MigrationRun {
  readonly problems: ReadonlyArray<string>
  readonly owner: "source" | "destination"
  readonly messages: Messages
}

const isMigrationFailed = (exit: Exit.Exit<unknown, unknown>): boolean => {
  if (Exit.isSuccess(exit)) return true
  const error = Cause.findErrorOption(exit.cause)
  return Option.isSome(error) && error.value instanceof MigrationFailed
}

/** The tag of the cause of a side's `MigrationFailed`, if it failed with one. */
const causeTag = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.findErrorOption(exit.cause)
  return Option.isSome(error) && error.value instanceof MigrationFailed ? error.value.cause._tag : undefined
}

const differences = (
  expected: Readonly<Record<string, State>>,
  actual: Readonly<Record<string, State>>
): Array<string> =>
  Object.keys(expected)
    .filter((id) => expected[id] !== actual[id])
    .map((id) => `${id} is ${actual[id]}, expected ${expected[id]}`)

/** Judges a finished migration between `pair`'s groups against the model. */
export const judgeMigration = (
  pair: Pair,
  models: { source: ModelGroup; destination: ModelGroup },
  out: Outcome,
  policy: ErrorPolicy = "reset"
) =>
  Effect.gen(function* () {
    const problems: Array<string> = []
    const exits: ReadonlyArray<readonly [string, Exit.Exit<unknown, unknown>]> = [
      ["source", out.source],
      ["destination", out.destination]
    ]
    for (const [side, exit] of exits)
      if (Exit.isFailure(exit) && !isMigrationFailed(exit))
        problems.push(`the ${side} ended with neither a summary nor a MigrationFailed: ${Cause.pretty(exit.cause)}`)
    const ownership = yield* Effect.orDie(Journal.ownership(pair.journal))
    const owner = ownership._tag === "DestinationOwns" ? "destination" : "source"
    // Which devices went into ERROR, from the device events (a quarantined one stays there).
    const inError = (sim: Pair["source"]) =>
      new Set(sim.fabric.trace().flatMap((e) => (e.state === "ERROR" ? [e.device] : [])))
    const expected = expectedAfterMigration(models.source, models.destination, owner, policy, {
      source: inError(pair.source),
      destination: inError(pair.destination)
    })
    // A side may leave its group short of the model's states only if its recovery itself met a
    // fault (an arc of the rollback or the parking failed or timed out, a reset failed), and says so.
    const unrecovered = (side: "source" | "destination", exit: Exit.Exit<unknown, MigrationFailed>): boolean => {
      if (Exit.isSuccess(exit)) return false
      const error = Cause.findErrorOption(exit.cause)
      if (Option.isNone(error) || error.value.recovered) return false
      const faulted =
        error.value.recoveryProblem?.startsWith("reset failed") === true ||
        out.events.some(
          (e) =>
            e._tag === "GroupTransition" &&
            e.side === side &&
            (e.step === "rollback" || e.step === "park") &&
            e.event._tag === "ArcFailed"
        )
      if (!faulted)
        problems.push(`the ${side} did not recover, yet nothing failed during its recovery: ${error.value.message}`)
      return true
    }
    // Committed, a destination may give up resuming (ResumeIncomplete) only when its resume arcs
    // failed, and must never reset a device from the decision on: it holds the only state that may run.
    const destinationEvents = out.events.flatMap((e) =>
      e._tag === "GroupTransition" && e.side === "destination" ? [{ step: e.step, event: e.event }] : []
    )
    const resumeIncomplete = owner === "destination" && causeTag(out.destination) === "ResumeIncomplete"
    if (resumeIncomplete) {
      if (!destinationEvents.some((e) => e.step === "resume" && e.event._tag === "ArcFailed"))
        problems.push("committed, the destination gave up resuming though no resume arc failed")
      // Only a device in ERROR may be reset (the uAPI's only way out of ERROR): its state is lost anyway.
      const resetAfterCommit = destinationEvents.some(
        (e) => (e.step === "resume" || e.step === "park") && e.event._tag === "DeviceReset" && e.event.from !== "ERROR"
      )
      if (resetAfterCommit) problems.push("committed, the destination reset a device holding the migrated state")
    }
    // The source ended committed but unconfirmed (its wait for the destination's answer reached the
    // peer timeout): it stays stopped whatever the destination does next (the documented exposure of
    // `SourceSummary.confirmed`: the group may run nowhere, and an operator settles it). If the
    // destination then gives the group back, the journal names the source, whose process has gone:
    // its devices hold their state in STOP_COPY, where it left them.
    const sourceLeft = Exit.isSuccess(out.source) && !out.source.value.confirmed && owner === "source"
    if (sourceLeft && causeTag(out.destination) !== "ResumeIncomplete")
      problems.push(
        "the source left unconfirmed and the journal names it, yet the destination did not give up resuming"
      )
    const expectedSource = sourceLeft
      ? Object.fromEntries(Object.keys(expected.source).map((id) => [id, "STOP_COPY" as const]))
      : expected.source
    const source = unrecovered("source", out.source) ? [] : differences(expectedSource, yield* statesOf(pair.source))
    const destination =
      resumeIncomplete || unrecovered("destination", out.destination)
        ? []
        : differences(expected.destination, yield* statesOf(pair.destination))
    if (source.length > 0 || destination.length > 0)
      problems.push(
        `the ${owner} owns the group (${ownership._tag}), but on the source ${source.join(", ") || "all is well"}; on the destination ${destination.join(", ") || "all is well"}`
      )
    if (owner === "destination" && out.verified.some((v) => !v))
      problems.push("committed, but the destination's data differs from the source's")
    if (owner === "destination" && Exit.isFailure(out.destination) && !resumeIncomplete)
      problems.push(`committed, but the destination failed: ${Cause.pretty(out.destination.cause)}`)
    const both = yield* Effect.exit(assertNeverBothRun(pair))
    if (Exit.isFailure(both)) problems.push(`both groups ran: ${Cause.pretty(both.cause)}`)
    if (process.env.FUZZ_DEBUG && problems.length > 0)
      problems.push(
        ...pair.source.fabric.trace().map((e) => `source ${JSON.stringify(e)}`),
        ...pair.destination.fabric.trace().map((e) => `destination ${JSON.stringify(e)}`),
        ...out.events
          .filter((e) => e._tag !== "GroupTransition" || e.event._tag !== "PlanReady")
          .map((e) => JSON.stringify(e))
      )
    for (const [side, sim] of [
      ["source", pair.source],
      ["destination", pair.destination]
    ] as const) {
      yield* sim.fabric.settle
      for (const v of sim.fabric.violations().filter(isOrderingViolation))
        problems.push(
          `${side}: ordering violation on ${v.edge.initiator} → ${v.edge.target} (${v.cause.event} of ${v.cause.device})`
        )
      for (const p of yield* leftovers(sim)) problems.push(`${side}: ${p}`)
    }
    return { problems, owner } as const
  })

/** Two groups ready to migrate (the destination parked in STOP), and the model of each. */
export interface Prepared {
  readonly pair: Pair
  readonly models: { readonly source: ModelGroup; readonly destination: ModelGroup }
}

/** Builds the two groups of `group` with `perturbation`'s faults, the fabrics' edges from the model. */
export const prepareMigration = (group: MigrationGroup, perturbation: Perturbation): Effect.Effect<Prepared> =>
  Effect.gen(function* () {
    const models = { source: modelGroup(group), destination: modelGroup(group) }
    const pair = yield* Effect.orDie(
      makePair(docOf(group, perturbation.source), docOf(group, perturbation.destination), {
        edges: models.source.edges
      })
    )
    return { pair, models }
  })

/**
 * Runs one prepared migration under `perturbation`'s cut and options, on whatever clock the caller
 * provides (the test clock moved by `runOnVirtualTime`, or a fuzzer's scheduler), and judges it.
 */
export const runPrepared = ({ pair, models }: Prepared, perturbation: Perturbation): Effect.Effect<MigrationRun> =>
  Effect.gen(function* () {
    const messages: Messages = { source: 0, destination: 0 }
    const cut = perturbation.cut
    const limit = (side: "source" | "destination") => (cut?.direction === side ? cut.after : undefined)
    const options = {
      errorPolicy: perturbation.policy ?? "reset",
      arcConcurrency: perturbation.arcConcurrency,
      arcTimeoutMs: 200,
      peerTimeoutMs: 2_000
    }
    const out = yield* migrate(pair, {
      transports: pairWith(
        (t) =>
          cutAfterMessages(t, limit("source"), (n) => {
            messages.source = n
          }),
        (t) =>
          cutAfterMessages(t, limit("destination"), (n) => {
            messages.destination = n
          })
      ),
      source: { ...options, precopy: perturbation.precopy ?? true, chunkBytes: 1024, maxRounds: 3 },
      destination: perturbation.sharedJournal === false ? { ...options, decisionJournal: undefined } : options
    })
    const judged = yield* judgeMigration(pair, models, out, perturbation.policy ?? "reset")
    return { ...judged, messages } satisfies MigrationRun
  })

/** Prepares and runs one migration of `group` under `perturbation` (see `runPrepared`). */
export const runMigration = (group: MigrationGroup, perturbation: Perturbation): Effect.Effect<MigrationRun> =>
  Effect.flatMap(prepareMigration(group, perturbation), (prepared) => runPrepared(prepared, perturbation))
