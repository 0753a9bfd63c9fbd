import { MemoryTransport, TcpTransport, type Transport, type TransportError } from "@lockstep/stream"
import { Context, Effect, Layer, Option, Queue, type Scope } from "effect"

/**
 * The channel a migration session runs over, as a service (`Migration.source` and
 * `Migration.destination` read it). The session owns it and closes it when done; a layer that
 * opened it closes it with its scope too (closing is idempotent).
 */
export class MigrationTransport extends Context.Service<MigrationTransport, Transport>()(
  "@lockstep/migration/MigrationTransport"
) {
  /** A transport of your own (one end of `MemoryTransport.pair()`, a file, a socket). */
  static readonly layer = (transport: Transport): Layer.Layer<MigrationTransport> =>
    Layer.succeed(MigrationTransport, transport)

  /**
   * A TCP connection to the peer's listener, closed with the layer; extra channels (`channels`
   * > 1) connect again with the same options. Usually the source's side; a destination that
   * dials (the source then uses {@link MigrationTransport.accept}) can read into recycled
   * buffers (`recycledReads`), which Node offers only on the sockets it dials.
   */
  static readonly connect = (
    options: TcpTransport.ConnectOptions
  ): Layer.Layer<MigrationTransport | MigrationChannels, TransportError> =>
    Layer.effectContext(
      Effect.map(TcpTransport.connect(options), (transport) =>
        Context.make(MigrationTransport, transport).pipe(
          Context.add(MigrationChannels, { open: TcpTransport.connect(options) })
        )
      )
    )

  /**
   * The next connection `listener` accepts, closed with the layer; extra channels are the next
   * ones it accepts. Usually the destination's side; the source's when the destination dials.
   */
  static readonly accept = (
    listener: TcpTransport.Listener
  ): Layer.Layer<MigrationTransport | MigrationChannels, TransportError> =>
    Layer.effectContext(
      Effect.map(listener.accept, (transport) =>
        Context.make(MigrationTransport, transport).pipe(Context.add(MigrationChannels, { open: listener.accept }))
      )
    )

  /**
   * Listens on `options`' address and takes the first connection (the destination's side), and
   * the extra channels after it; the listener and the connections close with the layer. To
   * learn a port chosen by the system (port 0) before the source connects, listen yourself and
   * use {@link MigrationTransport.accept}.
   */
  static readonly listen = (
    options: TcpTransport.ListenOptions
  ): Layer.Layer<MigrationTransport | MigrationChannels, TransportError> =>
    Layer.unwrap(Effect.map(TcpTransport.listen(options), (listener) => MigrationTransport.accept(listener)))
}

/**
 * How a session gets the extra connections of a migration over several channels (`channels` >
 * 1): the source opens one more connection to the destination, the destination accepts the next
 * one. Each connection closes with the scope it was opened in (the session's).
 */
export class MigrationChannels extends Context.Service<
  MigrationChannels,
  { readonly open: Effect.Effect<Transport, TransportError, Scope.Scope> }
>()("@lockstep/migration/MigrationChannels") {
  /**
   * Extra channels in memory, for both sides in one process: each connection the source's end
   * opens is the next one the destination's end accepts.
   */
  static readonly memory = (
    options?: MemoryTransport.MemoryOptions
  ): Effect.Effect<{
    readonly source: MigrationChannels["Service"]
    readonly destination: MigrationChannels["Service"]
  }> =>
    Effect.map(Queue.unbounded<Transport>(), (incoming) => ({
      source: {
        open: Effect.flatMap(MemoryTransport.pair(options), ([a, b]) => Effect.as(Queue.offer(incoming, b), a))
      },
      destination: { open: Queue.take(incoming) }
    }))
}

/**
 * How this side gets its extra channels: the session's own option when given (`openChannel`,
 * `acceptChannel`), else the `MigrationChannels` service when one is provided, else none.
 */
export const channelsFrom = (
  option: Effect.Effect<Transport, TransportError, Scope.Scope> | undefined
): Effect.Effect<Effect.Effect<Transport, TransportError, Scope.Scope> | undefined> =>
  option === undefined
    ? Effect.map(Effect.serviceOption(MigrationChannels), (service) =>
        Option.getOrUndefined(Option.map(service, (s) => s.open))
      )
    : Effect.succeed(option)
