import type { MigrationFailed } from "@lockstep/migration"

/*
 * A failed migration in JSON: `message` is the sentence a person reads (no stack trace, no
 * source path); everything a program needs is in fields of its own, the cause included, as its
 * typed error's own data.
 */

type Json = string | number | boolean | null | ReadonlyArray<Json> | { readonly [key: string]: Json }

const isRecord = (v: unknown): v is Readonly<Record<string, unknown>> => typeof v === "object" && v !== null

/**
 * A typed error as JSON: its tag, its sentence, and its own fields (nested errors likewise, to a
 * few levels). Stacks and functions are never part of it.
 */
export const causeJson = (error: unknown, depth = 3): Json => {
  if (error === null || typeof error === "string" || typeof error === "number" || typeof error === "boolean")
    return error
  if (Array.isArray(error)) return error.map((e) => causeJson(e, depth))
  if (!isRecord(error) || depth < 0) return String(error)
  const out: Record<string, Json> = {}
  if (typeof error._tag === "string") out._tag = error._tag
  if (error instanceof Error) out.message = error.message
  // An error's `cause` is not enumerable, but it is the structure a program wants.
  const fields =
    "cause" in error && !Object.hasOwn(out, "cause")
      ? [...Object.entries(error), ["cause", error.cause] as const]
      : Object.entries(error)
  for (const [key, value] of fields) {
    if (key === "stack" || key === "_tag" || typeof value === "function" || value === undefined) continue
    out[key] = causeJson(value, depth - 1)
  }
  return out
}

/** The `error` object of a failed migration, as `simulate --json` and `migrate --json` print it. */
export const failureJson = (error: MigrationFailed) => ({
  _tag: error._tag,
  message: error.message,
  side: error.side,
  phase: error.phase,
  origin: error.origin,
  cause: causeJson(error.cause),
  touched: error.touched,
  recovered: error.recovered,
  quarantined: error.quarantined,
  ...(error.recoveryProblem === undefined ? {} : { recoveryProblem: error.recoveryProblem })
})
