import { Schema, SchemaTransformation } from "effect"

/*
 * The network values `lockstep migrate` takes on its command line, as schemas: `--listen PORT`
 * and `--connect HOST:PORT` decode through them (`Flag.withSchema`), so a bad value is a usage
 * error naming the flag and what it expects, before anything reads a file or opens a socket.
 * Each schema carries one `expected` sentence, whichever of its checks fails.
 */

const listenPort = "a port (0-65535; 0 picks a free one)"

/** Decimal digits only: `Number` would also take "", " 7", "0x10" and "1e3". */
const digits = (expected: string) => Schema.String.check(Schema.isPattern(/^[0-9]+$/, { expected }))

/** A port to listen on: 0-65535, where 0 asks the system for a free one. */
export const ListenPort = digits(listenPort).pipe(
  Schema.decodeTo(
    Schema.Number.check(Schema.isBetween({ minimum: 0, maximum: 65535 }, { expected: listenPort })),
    SchemaTransformation.numberFromString
  )
)

const hostPort = "HOST:PORT (a host name or address, and a port 1-65535)"

/** A destination's address: a host (an IPv6 address may be bracketed) and a port 1-65535. */
export interface HostPort {
  readonly host: string
  readonly port: number
}

const Endpoint = Schema.Struct({
  host: Schema.String.check(Schema.isNonEmpty({ expected: hostPort })),
  port: Schema.Number.check(Schema.isBetween({ minimum: 1, maximum: 65535 }, { expected: hostPort }))
})

/** `HOST:PORT`, split at its last `:` (an IPv6 host keeps its own), into a host and a port. */
export const HostPort = Schema.String.check(Schema.isPattern(/^.+:[0-9]+$/, { expected: hostPort })).pipe(
  Schema.decodeTo(
    Endpoint,
    SchemaTransformation.transform({
      decode: (text: string) => {
        const at = text.lastIndexOf(":")
        return { host: text.slice(0, at).replace(/^\[(.*)\]$/, "$1"), port: Number(text.slice(at + 1)) }
      },
      encode: ({ host, port }: HostPort) => `${host.includes(":") ? `[${host}]` : host}:${port}`
    })
  )
)

const channelCount = "a channel count (a whole number, 1 or more)"

/** How many TCP connections a source spreads its devices over: 1 or more. */
export const ChannelCount = digits(channelCount).pipe(
  Schema.decodeTo(
    Schema.Number.check(Schema.isGreaterThanOrEqualTo(1, { expected: channelCount })),
    SchemaTransformation.numberFromString
  )
)
