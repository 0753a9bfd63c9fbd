import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import { Effect, Result, Schema } from "effect"
import { JournalFailed } from "./MigrationError.js"

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
   * committed → aborted: the destination failed to resume, reset its devices and gave the group
   * back, so the source may run again.
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
      reason: Schema.optionalKey(Schema.String)
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
  const row =
    entry.reason === undefined
      ? { migration: entry.migration, status: entry.status, updatedAt: entry.updatedAt }
      : { ...entry, reason: entry.reason }
  return { version: 1, migrations: [...rest, row].slice(-journalCapacity) }
}

/**
 * The rules of the journal, stated once, for every store: a store gives a way to read every
 * entry and a way to apply one `Change` to one migration's entry atomically (against the store's
 * other writers too), and gets a `Journal`. `memory` and `file` are made this way; a database
 * can be too.
 */
export const make = (
  location: string,
  read: (operation: Operation) => Effect.Effect<ReadonlyArray<JournalEntry>, JournalFailed>,
  update: <A>(operation: Operation, migration: string, change: Change<A>) => Effect.Effect<A, JournalFailed>
): Journal => ({
  location,
  entries: read("read"),
  begin: (migration) =>
    update("begin", migration, (entry, now) =>
      entry === undefined
        ? Result.succeed([{ migration, status: "started", updatedAt: now }, undefined] as const)
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
      entry?.status === "committed" || entry?.status === "aborted"
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

/**
 * A journal in a small JSON file (`{"version":1,"migrations":[…]}`). Every change takes an
 * exclusive lock file beside it (`PATH.lock`, holding the owner's pid; a lock whose process is
 * gone is broken), reads the file, writes the new document to a temporary file, fsyncs it and
 * renames it over the old one: a crash leaves the old document or the new one, never half.
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
  }

  const holderAlive = async (): Promise<boolean> => {
    // A lock that cannot be read (just released, or still being written) counts as held: try again.
    const pid = Number.parseInt(await fs.readFile(lockPath, "utf8").catch(() => ""), 10)
    if (!Number.isSafeInteger(pid) || pid <= 0) return true
    try {
      process.kill(pid, 0)
      return true
    } catch (cause) {
      return codeOf(cause) !== "ESRCH"
    }
  }

  const locked = async <A>(work: () => Promise<A>): Promise<A> => {
    const deadline = Date.now() + lockTimeoutMs
    for (;;) {
      try {
        const handle = await fs.open(lockPath, "wx")
        await handle.writeFile(String(process.pid))
        await handle.close()
        break
      } catch (cause) {
        if (codeOf(cause) !== "EEXIST") throw cause
        if (!(await holderAlive())) {
          await fs.rm(lockPath, { force: true })
          continue
        }
        if (Date.now() > deadline) throw new Error(`the lock ${lockPath} is held by a live process`)
        await new Promise((resolve) => setTimeout(resolve, 2))
      }
    }
    try {
      return await work()
    } finally {
      await fs.rm(lockPath, { force: true })
    }
  }

  const update = <A>(operation: Operation, migration: string, change: Change<A>): Effect.Effect<A, JournalFailed> =>
    Effect.clockWith((clock) =>
      Effect.tryPromise({
        try: () =>
          locked(async (): Promise<Result.Result<A, string>> => {
            const applied = apply(await load(), migration, change, clock.currentTimeMillisUnsafe())
            if (Result.isFailure(applied)) return Result.fail(applied.failure)
            const [next, value] = applied.success
            if (next !== undefined) await store(next)
            return Result.succeed(value)
          }),
        catch: (cause) => failed(operation, reasonOf(cause))
      }).pipe(
        Effect.flatMap((applied) =>
          Result.isFailure(applied) ? Effect.fail(failed(operation, applied.failure)) : Effect.succeed(applied.success)
        )
      )
    )

  return make(
    path,
    (operation) =>
      Effect.tryPromise({
        try: async () => (await load()).migrations,
        catch: (cause) => failed(operation, reasonOf(cause))
      }),
    update
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
