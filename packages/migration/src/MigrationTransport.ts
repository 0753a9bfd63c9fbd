import { TcpTransport, type Transport, type TransportError } from "@lockstep/stream"
import { Context, Effect, Layer } from "effect"

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

  /** A TCP connection to the destination's listener (the source's side), closed with the layer. */
  static readonly connect = (options: TcpTransport.ConnectOptions): Layer.Layer<MigrationTransport, TransportError> =>
    Layer.effect(MigrationTransport, TcpTransport.connect(options))

  /** The next connection `listener` accepts (the destination's side), closed with the layer. */
  static readonly accept = (listener: TcpTransport.Listener): Layer.Layer<MigrationTransport, TransportError> =>
    Layer.effect(MigrationTransport, listener.accept)

  /**
   * Listens on `options`' address and takes the first connection (the destination's side);
   * the listener and the connection close with the layer. To learn a port chosen by the system
   * (port 0) before the source connects, listen yourself and use {@link MigrationTransport.accept}.
   */
  static readonly listen = (options: TcpTransport.ListenOptions): Layer.Layer<MigrationTransport, TransportError> =>
    Layer.effect(
      MigrationTransport,
      Effect.flatMap(TcpTransport.listen(options), (listener) => listener.accept)
    )
}
