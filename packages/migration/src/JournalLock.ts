import * as fs from "node:fs/promises"
import { Clock, Duration, Effect, Schedule, Schema, type Scope } from "effect"

/**
 * The exclusive lock of a file journal: a file beside it (`PATH.lock`) created only if absent
 * (`O_EXCL`), holding its owner's pid. The rule:
 * - absent: create it, and it is ours until released;
 * - held by a process that is gone (its pid answers ESRCH): stale, remove it and try again at once;
 * - held by a live process (or not yet readable: just created, or just released): wait and try
 *   again, every few ms (jittered, so that waiters do not move in step), until the timeout;
 *   past it, {@link JournalLockHeld}.
 * The wait is on real time whatever clock the program runs on: the other holders are processes.
 */

/** The journal's lock is held by a live process past the lock timeout. */
export class JournalLockHeld extends Schema.TaggedError<JournalLockHeld>()("JournalLockHeld", {
  /** The lock file. */
  lockPath: Schema.String,
  /** The pid the lock file names, when it could be read. */
  holder: Schema.optional(Schema.Number),
  /** How long this process waited, in ms (the lock timeout). */
  waitedMs: Schema.Number
}) {
  override get message(): string {
    const holder = this.holder === undefined ? "a live process" : `process ${this.holder}, which is alive`
    return `the journal lock ${this.lockPath} is held by ${holder} (waited ${this.waitedMs} ms): wait for that process to finish and try again; if it is not a lockstep process using this journal (its pid was reused), remove ${this.lockPath}`
  }
}

/** The lock file could not be created, read or removed (other than being held). */
export class JournalLockFailed extends Schema.TaggedError<JournalLockFailed>()("JournalLockFailed", {
  lockPath: Schema.String,
  reason: Schema.String
}) {
  override get message(): string {
    return `the journal lock ${this.lockPath}: ${this.reason}`
  }
}

/** Options of {@link acquire}. */
export interface LockOptions {
  /** Longest wait for a live holder, in real ms. */
  readonly timeoutMs: number
  /** Pause between attempts while a live process holds the lock, in ms, before jitter. Default 2. */
  readonly retryMs?: number | undefined
}

/** Held by a live process this attempt: try again. */
interface Busy {
  readonly _tag: "Busy"
  readonly holder: number | undefined
}

const codeOf = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

const reasonOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Whether `pid` names a process (of any user) on this host. */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (cause) {
    return codeOf(cause) !== "ESRCH"
  }
}

/** The lock file's pid, or `undefined` when it cannot be read as one. */
const holderOf = (lockPath: string): Effect.Effect<number | undefined> =>
  Effect.promise(() => fs.readFile(lockPath, "utf8").catch(() => "")).pipe(
    Effect.map((text) => {
      const pid = Number.parseInt(text, 10)
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
    })
  )

const create = (lockPath: string): Effect.Effect<void, unknown> =>
  Effect.tryPromise({
    try: async () => {
      const handle = await fs.open(lockPath, "wx")
      try {
        await handle.writeFile(String(process.pid))
      } finally {
        await handle.close()
      }
    },
    catch: (cause) => cause
  })

const release = (lockPath: string): Effect.Effect<void> =>
  Effect.promise(() => fs.rm(lockPath, { force: true }).catch(() => undefined))

/** One attempt: the lock is ours, or a live process holds it (`Busy`), or the file system failed. */
const attempt = (lockPath: string): Effect.Effect<void, Busy | JournalLockFailed> =>
  create(lockPath).pipe(
    Effect.catch((cause) => {
      if (codeOf(cause) !== "EEXIST") return Effect.fail(new JournalLockFailed({ lockPath, reason: reasonOf(cause) }))
      return Effect.flatMap(holderOf(lockPath), (holder) =>
        // An unreadable lock counts as held: it is being written, or was just released.
        holder === undefined || isAlive(holder)
          ? Effect.fail<Busy>({ _tag: "Busy", holder })
          : Effect.andThen(
              release(lockPath),
              Effect.suspend(() => attempt(lockPath))
            )
      )
    })
  )

/**
 * Takes the lock at `lockPath` for the calling scope (released when it closes), waiting for a
 * live holder at most `timeoutMs`.
 */
export const acquire = (
  lockPath: string,
  options: LockOptions
): Effect.Effect<void, JournalLockHeld | JournalLockFailed, Scope.Scope> => {
  const retry = Schedule.max([
    Schedule.jittered(Schedule.spaced(Duration.millis(options.retryMs ?? 2))),
    Schedule.during(Duration.millis(options.timeoutMs))
  ])
  const take = attempt(lockPath).pipe(
    Effect.retry({ schedule: retry, while: (e) => e._tag === "Busy" }),
    Effect.mapError((e): JournalLockHeld | JournalLockFailed =>
      e._tag === "Busy"
        ? new JournalLockHeld({
            lockPath,
            waitedMs: options.timeoutMs,
            ...(e.holder === undefined ? {} : { holder: e.holder })
          })
        : e
    ),
    Effect.provideService(Clock.Clock, Clock.Clock.defaultValue())
  )
  return Effect.acquireRelease(take, () => release(lockPath))
}
