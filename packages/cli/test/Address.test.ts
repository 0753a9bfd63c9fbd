import { describe, expect, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import { ChannelCount, HostPort, ListenPort } from "../src/Address.js"
import { runCli } from "./runCli.js"

const listen = Schema.decodeUnknownResult(ListenPort)
const connect = Schema.decodeUnknownResult(HostPort)
const channels = Schema.decodeUnknownResult(ChannelCount)

// TCP ports are 16-bit: 0-65535. A listener may ask for 0 (the system picks a free port); a
// connection needs a real port, 1-65535.
describe("--listen PORT and --connect HOST:PORT as schemas", () => {
  it("a port to listen on is an integer 0-65535", () => {
    expect(listen("0")).toEqual(Result.succeed(0))
    expect(listen("65535")).toEqual(Result.succeed(65535))
    for (const bad of ["65536", "-1", "1.5", "abc", "", " 7", "0x10", "1e3", "7300x"])
      expect(Result.isFailure(listen(bad))).toBe(true)
  })

  it("an address is split at its last ':', a bracketed IPv6 host unbracketed", () => {
    expect(connect("127.0.0.1:7300")).toEqual(Result.succeed({ host: "127.0.0.1", port: 7300 }))
    expect(connect("[::1]:7300")).toEqual(Result.succeed({ host: "::1", port: 7300 }))
    expect(connect("db.example:1")).toEqual(Result.succeed({ host: "db.example", port: 1 }))
    for (const bad of ["7300", ":7300", "host:", "host:0", "host:65536", "host:7300x", "host:1e3", "host: 7"])
      expect(Result.isFailure(connect(bad))).toBe(true)
  })

  it("a bad value is a usage error (exit 2) naming the flag, the value and what it expects", async () => {
    const port = await runCli("migrate", "--listen", "70000", "scenario.json")
    expect(port.exitCode).toBe(2)
    expect(port.stderr).toBe(
      'lockstep: --listen: "70000" is not a port (0-65535; 0 picks a free one); run "lockstep migrate --help" for usage\n'
    )
    const address = await runCli("migrate", "--connect", "host:0", "scenario.json", "--json")
    expect(address.exitCode).toBe(2)
    const message =
      '--connect: "host:0" is not HOST:PORT (a host name or address, and a port 1-65535); run "lockstep migrate --help" for usage'
    expect(address.stderr).toBe(`lockstep: ${message}\n`)
    expect(JSON.parse(address.stdout)).toEqual({ ok: false, exitCode: 2, error: { _tag: "InvalidInput", message } })
  })

  it("--channels N is a whole number, 1 or more; a bad one is a usage error (exit 2)", async () => {
    expect(channels("1")).toEqual(Result.succeed(1))
    expect(channels("4")).toEqual(Result.succeed(4))
    for (const bad of ["0", "-1", "1.5", "x", "", " 2", "0x2", "1e1"])
      expect(Result.isFailure(channels(bad))).toBe(true)
    const run = await runCli("migrate", "--connect", "127.0.0.1:7300", "--channels", "x", "scenario.json")
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toBe(
      'lockstep: --channels: "x" is not a channel count (a whole number, 1 or more); run "lockstep migrate --help" for usage\n'
    )
    const zero = await runCli("migrate", "--connect", "127.0.0.1:7300", "--channels", "0", "scenario.json")
    expect(zero.exitCode).toBe(2)
    expect(zero.stderr).toContain('--channels: "0" is not a channel count')
  })

  it("--channels goes with the source: a destination takes what the source announces", async () => {
    const run = await runCli("migrate", "--listen", "0", "--channels", "2", "scenario.json")
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain("--channels goes with --connect or --local")
  })
})
