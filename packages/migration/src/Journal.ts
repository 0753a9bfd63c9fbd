import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { hostname } from "node:os"
import { dirname } from "node:path"
import { Clock, Effect, Result, Schema } from "effect"
import { acquire, isAlive } from "./JournalLock.js"
import { JournalFailed, JournalUnsettled } from "./MigrationError.js"

/**
 * Where a migration stands in the source's journal:
 * - `started`: handshake accepted, nothing decided: the source owns the group;
 * - `committed`: the source decided COMMIT (the destination may run; the source stays stopped);
 * - `completed`: committed, and the destination confirmed it runs;
 * - `aborted`: decided ABORT (before commit, fenced by the destination, or renounced by a
 *   destination that failed to resume and reset its devices): the source owns the group.
 */
export type JournalStatus = "started" | "committed" | "completed" | "aborted"

/** One migration in the journal. */
export interface JournalEntry {
  readonly migration: string
  readonly status: JournalStatus
  /** Clock time of the last change, in ms. */
  readonly updatedAt: number
  readonly reason?: string | undefined
  /** The process that began it, on which host (file journals): tells a stale `started` entry from one in progress. */
  readonly pid?: number | undefined
  readonly host?: string | undefined
}

/** A decision once recorded: the first one wins. */
export type Decision = "commit" | "abort"

/**
 * The source's record of its commit decisions: the one place that says, after a crash or a cut
 * channel, which side owns a group. Each operation is atomic (compare-and-set), so a source
 * recording COMMIT and a destination fencing with ABORT cannot both win.
 */
export interface Journal {
  /** A description for errors: a path, or `memory`. */
  readonly location: string
  /** Every migration recorded, oldest first (the journal keeps the last {@link journalCapacity}). */
  readonly entries: Effect.Effect<ReadonlyArray<JournalEntry>, JournalFailed>
  /** Records `migration` as started (undecided). */
  readonly begin: (migration: string) => Effect.Effect<void, JournalFailed>
  /**
   * Records `decision` for `migration` unless one is recorded already; answers the status that
   * stands (`committed` or `aborted`; `completed` counts as committed). Deciding ABORT for a
   * migration the journal has never seen records it as aborted, which is how a destination
   * fences a source that has not decided yet.
   */
  readonly decide: (
    migration: string,
    decision: Decision,
    reason?: string
  ) => Effect.Effect<"committed" | "aborted", JournalFailed>
  /** committed → completed: the destination confirmed that it runs. */
  readonly complete: (migration: string) => Effect.Effect<void, JournalFailed>
  /**
   * committed (or completed) → aborted: the destination failed to resume, reset its devices and
   * gave the group back (or an operator recorded that the group is back), so the source may run again.
   */
  readonly renounce: (migration: string, reason: string) => Effect.Effect<void, JournalFailed>
}

/** How many migrations a journal remembers. */
export const journalCapacity = 32

/** The default journal file of a source, relative to the working directory. */
export const defaultJournalPath = "lockstep-journal.json"

/** The journal operation a failure names. */
export type Operation = JournalFailed["operation"]

/** The journal document, as stored. */
const JournalDocument = Schema.Struct({
  version: Schema.Literal(1),
  migrations: Schema.Array(
    Schema.Struct({
      migration: Schema.String,
      status: Schema.Literals(["started", "committed", "completed", "aborted"]),
      updatedAt: Schema.Number,
      reason: Schema.optionalKey(Schema.String),
      pid: Schema.optionalKey(Schema.Int),
      host: Schema.optionalKey(Schema.String)
    })
  )
})
type JournalDocument = typeof JournalDocument.Type

const empty: JournalDocument = { version: 1, migrations: [] }

/**
 * A change to one migration's entry: given the entry (if any) and the time, the new entry (or
 * `undefined`: no change) and the answer, or the reason it is refused.
 */
export type Change<A> = (
  entry: JournalEntry | undefined,
  now: number
) => Result.Result<readonly [JournalEntry | undefined, A], string>

const put = (doc: JournalDocument, entry: JournalEntry): JournalDocument => {
  const rest = doc.migrations.filter((m) => m.migration !== entry.migration)
  const row = {
    migration: entry.migration,
    status: entry.status,
    updatedAt: entry.updatedAt,
    ...(entry.reason === undefined ? {} : { reason: entry.reason }),
    ...(entry.pid === undefined ? {} : { pid: entry.pid }),
    ...(entry.host === undefined ? {} : { host: entry.host })
  }
  return { version: 1, migrations: [...rest, row].slice(-journalCapacity) }
}

/** The process recording a journal entry: the one a `started` entry names. */
export interface Recorder {
  readonly pid: number
  readonly host: string
}

/**
 * The rules of the journal, stated once, for every store: a store gives a way to read every
 * entry and a way to apply one `Change` to one migration's entry atomically (against the store's
 * other writers too), and gets a `Journal`. `memory` and `file` are made this way; a database
 * can be too. `recorder`, if given, is written into every `started` entry (a store whose
 * writers share a host and its process ids: a file), so that a restarted source can tell a
 * stale one from one in progress.
 */
export const make = (
  location: string,
  read: (operation: Operation) => Effect.Effect<ReadonlyArray<JournalEntry>, JournalFailed>,
  update: <A>(operation: Operation, migration: string, change: Change<A>) => Effect.Effect<A, JournalFailed>,
  recorder?: Recorder
): Journal => ({
  location,
  entries: read("read"),
  begin: (migration) =>
    update("begin", migration, (entry, now) =>
      entry === undefined
        ? Result.succeed([{ migration, status: "started", updatedAt: now, ...recorder }, undefined] as const)
        : Result.fail(`migration ${migration} is already recorded (${entry.status})`)
    ),
  decide: (migration, decision, reason) =>
    update("decide", migration, (entry, now) => {
      if (entry !== undefined && entry.status !== "started") {
        const stands = entry.status === "aborted" ? "aborted" : "committed"
        return Result.succeed([undefined, stands] as const)
      }
      if (entry === undefined && decision === "commit")
        return Result.fail(`migration ${migration} was never begun; it cannot commit`)
      const status = decision === "commit" ? "committed" : "aborted"
      return Result.succeed([{ migration, status, updatedAt: now, reason }, status] as const)
    }),
  complete: (migration) =>
    update("complete", migration, (entry, now) =>
      entry?.status === "committed"
        ? Result.succeed([{ migration, status: "completed", updatedAt: now }, undefined] as const)
        : entry?.status === "completed"
          ? Result.succeed([undefined, undefined] as const)
          : Result.fail(`migration ${migration} is ${entry?.status ?? "not recorded"}, not committed`)
    ),
  renounce: (migration, reason) =>
    update("renounce", migration, (entry, now) =>
      entry?.status === "committed" || entry?.status === "completed" || entry?.status === "aborted"
        ? Result.succeed([{ migration, status: "aborted", updatedAt: now, reason }, undefined] as const)
        : Result.fail(`migration ${migration} is ${entry?.status ?? "not recorded"}, not committed`)
    )
})

const apply = <A>(
  doc: JournalDocument,
  migration: string,
  change: Change<A>,
  now: number
): Result.Result<readonly [JournalDocument | undefined, A], string> =>
  Result.map(
    change(
      doc.migrations.find((m) => m.migration === migration),
      now
    ),
    ([entry, value]) => [entry === undefined ? undefined : put(doc, entry), value]
  )

/** A journal in memory, for tests and simulations: share one between a source and a destination. */
export const memory = (): Journal => {
  let doc = empty
  const location = "memory"
  return make(
    location,
    () => Effect.sync(() => doc.migrations),
    (operation, migration, change) =>
      Effect.clockWith((clock) =>
        Effect.suspend(() => {
          const applied = apply(doc, migration, change, clock.currentTimeMillisUnsafe())
          if (Result.isFailure(applied))
            return Effect.fail(new JournalFailed({ operation, location, reason: applied.failure }))
          const [next, value] = applied.success
          if (next !== undefined) doc = next
          return Effect.succeed(value)
        })
      )
  )
}

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))
const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

const decodeDocument = Schema.decodeUnknownResult(JournalDocument)

/** Options of a file journal. */
export interface FileJournalOptions {
  /** Longest wait for the journal's lock, in real ms. Default 5000. */
  readonly lockTimeoutMs?: number
}

/** Error codes by which a platform or file system says it cannot fsync a directory. */
const noDirectorySync: ReadonlySet<string> = new Set(["EISDIR", "EINVAL", "ENOTSUP", "EPERM"])

/** fsyncs a directory, where the platform can. */
const syncDirectory = async (directory: string): Promise<void> => {
  const cannot = (cause: unknown) => noDirectorySync.has(codeOf(cause) ?? "")
  let handle: fs.FileHandle
  try {
    handle = await fs.open(directory, "r")
  } catch (cause) {
    if (cannot(cause)) return
    throw cause
  }
  try {
    await handle.sync()
  } catch (cause) {
    if (!cannot(cause)) throw cause
  } finally {
    await handle.close()
  }
}

/**
 * A journal in a small JSON file (`{"version":1,"migrations":[…]}`). Every change takes an
 * exclusive lock file beside it (`PATH.lock`, holding the owner's pid; a lock whose process is
 * gone is broken; see `JournalLock`), reads the file, writes the new document to a temporary file, fsyncs it,
 * renames it over the old one and fsyncs the directory: a crash leaves the old document or the
 * new one, never half, and once a change is answered it survives a power loss (the rename is an
 * entry of the directory, durable only once the directory is). A `started` entry names the
 * process and host that began it, so that a restarted source can tell a stale one.
 */
export const file = (path: string, options: FileJournalOptions = {}): Journal => {
  const lockPath = `${path}.lock`
  const lockTimeoutMs = options.lockTimeoutMs ?? 5000
  const failed = (operation: Operation, reason: string) => new JournalFailed({ operation, location: path, reason })

  const load = async (): Promise<JournalDocument> => {
    let text: string
    try {
      text = await fs.readFile(path, "utf8")
    } catch (cause) {
      if (codeOf(cause) === "ENOENT") return empty
      throw cause
    }
    const decoded = decodeDocument(JSON.parse(text))
    if (Result.isFailure(decoded)) throw new Error(`not a journal document: ${decoded.failure.message}`)
    return decoded.success
  }

  const store = async (doc: JournalDocument): Promise<void> => {
    const temporary = `${path}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`
    const handle = await fs.open(temporary, "w")
    try {
      await handle.writeFile(`${JSON.stringify(doc, null, 2)}\n`)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await fs.rename(temporary, path)
    await syncDirectory(dirname(path))
  }

  const update = <A>(operation: Operation, migration: string, change: Change<A>): Effect.Effect<A, JournalFailed> =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* acquire(lockPath, { timeoutMs: lockTimeoutMs }).pipe(
          Effect.mapError((e) => failed(operation, e.message))
        )
        const now = yield* Clock.currentTimeMillis
        const applied = yield* Effect.tryPromise({
          try: async (): Promise<Result.Result<A, string>> => {
            const applied = apply(await load(), migration, change, now)
            if (Result.isFailure(applied)) return Result.fail(applied.failure)
            const [next, value] = applied.success
            if (next !== undefined) await store(next)
            return Result.succeed(value)
          },
          catch: (cause) => failed(operation, reasonOf(cause))
        })
        return Result.isFailure(applied) ? yield* failed(operation, applied.failure) : applied.success
      })
    )

  return make(
    path,
    (operation) =>
      Effect.tryPromise({
        try: async () => (await load()).migrations,
        catch: (cause) => failed(operation, reasonOf(cause))
      }),
    update,
    { pid: process.pid, host: hostname() }
  )
}

/**
 * Which side owns a group, from the source's journal:
 * - `DestinationOwns`: COMMIT was recorded; the destination runs (or must resume), the source stays stopped;
 * - `SourceOwns`: ABORT was recorded, or no migration is recorded: the source runs, the destination must reset;
 * - `Undecided`: started, never decided: the source owns the group and the destination must reset
 *   (it may not resume: it never learned a COMMIT, and fencing with ABORT settles it for good).
 */
export type Ownership =
  | { readonly _tag: "DestinationOwns"; readonly migration: string; readonly confirmed: boolean }
  | { readonly _tag: "SourceOwns"; readonly migration: string | undefined; readonly reason: string | undefined }
  | { readonly _tag: "Undecided"; readonly migration: string }

/** Who owns the group after `entry` (the newest entry, or the one for a given migration). */
export const ownershipOf = (entry: JournalEntry | undefined): Ownership => {
  if (entry === undefined) return { _tag: "SourceOwns", migration: undefined, reason: "no migration recorded" }
  switch (entry.status) {
    case "started":
      return { _tag: "Undecided", migration: entry.migration }
    case "committed":
    case "completed":
      return { _tag: "DestinationOwns", migration: entry.migration, confirmed: entry.status === "completed" }
    case "aborted":
      return { _tag: "SourceOwns", migration: entry.migration, reason: entry.reason }
  }
}

/** Reads the journal and says who owns the group: after `migration`, or after the newest migration. */
export const ownership = (journal: Journal, migration?: string): Effect.Effect<Ownership, JournalFailed> =>
  Effect.map(journal.entries, (entries) =>
    ownershipOf(migration === undefined ? entries.at(-1) : entries.find((e) => e.migration === migration))
  )

/** A sentence for an ownership verdict. */
export const describeOwnership = (o: Ownership): string => {
  switch (o._tag) {
    case "DestinationOwns":
      return `destination owns migration ${o.migration}${o.confirmed ? " (it confirmed it runs)" : " (committed; it must resume if it has not)"}; the source stays stopped`
    case "SourceOwns":
      return `source owns the group${o.migration === undefined ? "" : ` (migration ${o.migration} aborted${o.reason === undefined ? "" : `: ${o.reason}`})`}; the destination must reset`
    case "Undecided":
      return `migration ${o.migration} is undecided: the source owns the group and the destination must reset`
  }
}

/** A fresh migration id. */
export const newMigrationId = (): string => randomBytes(8).toString("hex")

/** Whether a `started` entry's process is alive on this host (so the migration is in progress, not stale). */
export const inProgress = (entry: JournalEntry): boolean => {
  if (entry.status !== "started" || entry.pid === undefined || entry.host !== hostname()) return false
  return entry.pid === process.pid || isAlive(entry.pid)
}

/**
 * The newest migration of the journal when it is not settled, so that no new migration may
 * start from this journal until it is: `started` (undecided: stale, or in progress), `committed`
 * (the destination owns the group but never confirmed it runs) or `completed` (the group left
 * with it: this side's copy is stale). `undefined` when nothing is recorded or the newest
 * migration was aborted: the source owns the group.
 */
export const unsettled = (journal: Journal): Effect.Effect<JournalUnsettled | undefined, JournalFailed> =>
  Effect.map(journal.entries, (entries) => {
    const last = entries.at(-1)
    if (last === undefined || last.status === "aborted") return undefined
    return new JournalUnsettled({
      location: journal.location,
      migration: last.migration,
      status: last.status,
      inProgress: inProgress(last),
      pid: last.pid,
      host: last.host,
      localHost: hostname()
    })
  })

/** Who an operator gives a migration's group to. */
export type Owner = "source" | "destination"

/** What {@link resolve} did: the migration, its status before and after. */
export interface Resolution {
  readonly migration: string
  readonly from: JournalStatus
  readonly to: JournalStatus
}

/**
 * Records an operator's decision about a migration (the newest, or `migration`): which side owns
 * its group. To the source: a `started` migration is decided ABORT, a `committed` or
 * `completed` one renounced (→ `aborted`): the destination must reset, and the source may run
 * and migrate again. To the destination: a `committed` migration is marked `completed` (the
 * destination runs it); a stale `started` one is decided COMMIT, which only a destination that
 * voted (it holds the validated state, waiting in STOP) can honour. Refused: giving an aborted
 * migration to the destination (it has reset its devices), and deciding a migration whose
 * source is still running it on this host.
 */
export const resolve = (
  journal: Journal,
  owner: Owner,
  options: { readonly migration?: string | undefined; readonly reason?: string | undefined } = {}
): Effect.Effect<Resolution, JournalFailed> =>
  Effect.gen(function* () {
    const refuse = (reason: string) => new JournalFailed({ operation: "resolve", location: journal.location, reason })
    const entries = yield* journal.entries
    const entry =
      options.migration === undefined ? entries.at(-1) : entries.find((e) => e.migration === options.migration)
    if (entry === undefined)
      return yield* refuse(
        options.migration === undefined ? "no migration is recorded" : `no migration ${options.migration} is recorded`
      )
    const { migration } = entry
    const reason = options.reason ?? `an operator gave the group to the ${owner}`
    if (inProgress(entry))
      return yield* refuse(
        `migration ${migration} is in progress (process ${entry.pid ?? "?"} on this host): wait for it to end, or stop it first`
      )
    const done = (to: JournalStatus): Resolution => ({ migration, from: entry.status, to })
    if (owner === "source") {
      if (entry.status === "aborted") return done("aborted")
      if (entry.status === "started") return done(yield* journal.decide(migration, "abort", reason))
      yield* journal.renounce(migration, reason)
      return done("aborted")
    }
    switch (entry.status) {
      case "aborted":
        return yield* refuse(
          `migration ${migration} was aborted: the destination has reset its devices, so it cannot own the group; the source owns it`
        )
      case "started": {
        const stands = yield* journal.decide(migration, "commit", reason)
        return done(stands)
      }
      case "committed":
        yield* journal.complete(migration)
        return done("completed")
      case "completed":
        return done("completed")
    }
  })
