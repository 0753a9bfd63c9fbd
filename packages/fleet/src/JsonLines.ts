import type * as net from "node:net"
import { Result } from "effect"

/**
 * The control protocol's framing: one JSON value per line. Calls `onLine` with each line
 * `socket` receives, parsed (a failure where the line is not JSON).
 */
export const onJsonLines = (socket: net.Socket, onLine: (parsed: Result.Result<unknown, unknown>) => void): void => {
  socket.setEncoding("utf8")
  let buffer = ""
  socket.on("data", (chunk: string) => {
    buffer += chunk
    for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
      const line = buffer.slice(0, end)
      buffer = buffer.slice(end + 1)
      onLine(Result.try(() => JSON.parse(line) as unknown))
    }
  })
}
