import { Layer, Option } from "effect"
import * as ClusterWorkflowEngine from "effect/cluster/ClusterWorkflowEngine"
import * as RunnerAddress from "effect/cluster/RunnerAddress"
import * as RunnerHealth from "effect/cluster/RunnerHealth"
import * as Runners from "effect/cluster/Runners"
import * as Sharding from "effect/cluster/Sharding"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import * as Digest from "effect/crypto/Digest"
import type * as SqlClient from "effect/sql/SqlClient"
import type * as WorkflowEngine from "effect/workflow/WorkflowEngine"

/**
 * The durable engine the fleet's workflows run on: `effect/cluster` sharding with its messages,
 * replies, runners and shard locks in SQL (`SqlMessageStorage`, `SqlRunnerStorage`), and the
 * `ClusterWorkflowEngine` on top.
 *
 * Runners talk to each other through the shared database alone (`Runners.layerNoop`): every
 * message the fleet sends is persisted, a runner polls storage for messages to its shards and
 * for replies to its requests, and a runner that stops heartbeating loses its shards when its
 * locks expire. No runner listens on a port, so there is no address to configure or guard.
 *
 * The configuration is set here, in code, never read from the environment:
 * `ShardingConfig.layerFromEnv` (what `SingleRunner.layer` uses) reads plain `HOST` and `PORT`,
 * which belong to whatever else the machine runs.
 */

/** How fast the cluster notices things, in ms. */
export interface EngineTimings {
  /** A runner that stops refreshing its shard locks loses them after this long. */
  readonly shardLockExpirationMs: number
  /** How often a runner refreshes its shard locks (and heartbeats). */
  readonly shardLockRefreshMs: number
  /** How often a runner re-reads who is alive and recomputes shard assignments. */
  readonly refreshAssignmentsMs: number
  /** How often a runner polls storage for messages to its shards (sent by other runners). */
  readonly messagePollMs: number
  /** How often a runner polls storage for replies to its requests. */
  readonly replyPollMs: number
}

/**
 * Timings for several runners: a killed runner's shards move after about
 * `shardLockExpirationMs + refreshAssignmentsMs` (about 6–7 s here, against 38 s with the
 * cluster's defaults), and a message between runners waits at most one poll.
 */
export const scaleOutTimings: EngineTimings = {
  shardLockExpirationMs: 6_000,
  shardLockRefreshMs: 2_000,
  refreshAssignmentsMs: 1_000,
  messagePollMs: 250,
  replyPollMs: 100
}

/**
 * Timings for one embedded runner: it restarts under the same address, so it takes its own
 * locks back at once; nothing else shares its storage.
 */
export const embeddedTimings: EngineTimings = {
  shardLockExpirationMs: 10_000,
  shardLockRefreshMs: 3_000,
  refreshAssignmentsMs: 1_000,
  messagePollMs: 500,
  replyPollMs: 100
}

/** Where one runner is: its name (a stable identity in storage) and the timings it runs with. */
export interface RunnerOptions {
  /**
   * The runner's identity in storage. A runner restarted under the same name takes its shard
   * locks back at once; under a new name it waits for the old locks to expire.
   */
  readonly name: string
  readonly timings: EngineTimings
  /** Shards per shard group. Every runner sharing a database must agree. Default 32. */
  readonly shardsPerGroup?: number | undefined
}

/** The sharding configuration of one runner, complete and independent of the environment. */
export const shardingConfig = (options: RunnerOptions): Layer.Layer<ShardingConfig.ShardingConfig> => {
  const t = options.timings
  return ShardingConfig.layer({
    // Port 0: the runner never listens; the address only identifies it in storage.
    runnerAddress: Option.some(RunnerAddress.make(options.name, 0)),
    shardsPerGroup: options.shardsPerGroup ?? 32,
    shardLockExpiration: t.shardLockExpirationMs,
    shardLockRefreshInterval: t.shardLockRefreshMs,
    refreshAssignmentsInterval: t.refreshAssignmentsMs,
    entityMessagePollInterval: t.messagePollMs,
    entityReplyPollInterval: t.replyPollMs,
    // Nobody pings: a runner is alive while its heartbeat in storage is fresh.
    runnerHealthCheckInterval: t.shardLockExpirationMs,
    entityTerminationTimeout: 2_000
  })
}

/**
 * The workflow engine of one runner over a `SqlClient` (SQLite for the embedded runner,
 * Postgres for runners that share the work). Provides `WorkflowEngine` and `Sharding`.
 */
export const layer = (
  options: RunnerOptions
): Layer.Layer<WorkflowEngine.WorkflowEngine | Sharding.Sharding, never, SqlClient.SqlClient> => {
  const sharding = Sharding.layer.pipe(
    Layer.provideMerge(Runners.layerNoop),
    Layer.provideMerge(SqlMessageStorage.layer),
    Layer.provide([Layer.orDie(SqlRunnerStorage.layer), RunnerHealth.layerNoop]),
    Layer.provide(shardingConfig(options)),
    Layer.provide(Digest.layerWebCrypto)
  )
  return ClusterWorkflowEngine.layer.pipe(Layer.provideMerge(sharding))
}
