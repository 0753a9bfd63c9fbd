/*
 * `lockstep migrate` as two real processes over TCP loopback: a destination listening on a port
 * it picks, and a source connecting to it. Shared by the suites that run whole migrations.
 */
import { readFile } from "node:fs/promises"
import { type Exited, type Running, startLockstep, waitFor } from "./Processes.js"

/** A destination that is listening, and its port. */
export interface Listening {
  readonly destination: Running
  readonly port: string
}

/** Starts a destination on a free port and waits until it listens. */
export const listen = async (scenario: string, extra: ReadonlyArray<string> = []): Promise<Listening> => {
  const destination = startLockstep(["migrate", "--listen", "0", ...extra, scenario])
  const port = await waitFor("the destination to listen", () => {
    const found = /listening on 127\.0\.0\.1:(\d+)/.exec(destination.stderr())?.[1]
    if (found !== undefined) return found
    if (destination.child.exitCode !== null) throw new Error(`the destination exited: ${destination.stderr()}`)
    return undefined
  })
  return { destination, port }
}

/** Starts a source connecting to `port`. */
export const connect = (scenario: string, port: string, extra: ReadonlyArray<string> = []): Running =>
  startLockstep(["migrate", "--connect", `127.0.0.1:${port}`, ...extra, scenario])

/** Both sides of one migration, to their ends. */
export const migratePair = async (
  scenario: string,
  source: ReadonlyArray<string>,
  destination: ReadonlyArray<string> = []
): Promise<{ readonly source: Exited; readonly destination: Exited }> => {
  const listening = await listen(scenario, destination)
  try {
    const [s, d] = await Promise.all([connect(scenario, listening.port, source).exited, listening.destination.exited])
    return { source: s, destination: d }
  } finally {
    listening.destination.child.kill("SIGKILL")
  }
}

/** The statuses a journal file records, migration by migration (none while it does not exist). */
export const journalStatuses = async (path: string): Promise<ReadonlyArray<{ migration: string; status: string }>> => {
  const text = await readFile(path, "utf8").catch(() => "")
  if (text === "") return []
  try {
    const doc: { migrations: Array<{ migration: string; status: string }> } = JSON.parse(text)
    return doc.migrations
  } catch {
    // A journal is replaced by a rename, never written in place: a read sees a whole document.
    throw new Error(`the journal ${path} is not whole: ${text}`)
  }
}

/** Polls the journal until its newest migration has `status` (every 5 ms), and answers it. */
export const whenJournalSays = (path: string, status: string, timeoutMs = 30_000) => {
  const until = Date.now() + timeoutMs
  const poll = async (): Promise<string> => {
    const last = (await journalStatuses(path)).at(-1)
    if (last?.status === status) return last.migration
    if (Date.now() > until) throw new Error(`timed out waiting for the journal to say ${status}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
    return poll()
  }
  return poll()
}
