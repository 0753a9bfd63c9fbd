import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { runCli } from "./runCli.js"

const root = fileURLToPath(new URL("../../..", import.meta.url))
const multiGpu = join(root, "examples/multi-gpu/scenario.json")
const faultRollback = join(root, "examples/fault-rollback/scenario.json")
const dir = mkdtempSync(join(tmpdir(), "lockstep-events-"))

afterAll(() => rmSync(dir, { recursive: true, force: true }))

const lines = (file: string) =>
  readFileSync(file, "utf8")
    .trimEnd()
    .split("\n")
    .map((line) => JSON.parse(line))

describe("--events FILE and lockstep timeline", () => {
  it("writes the run as JSON lines, and the timeline drawn from them is the one --timeline drew, byte for byte", async () => {
    const events = join(dir, "multi-gpu.jsonl")
    const live = join(dir, "multi-gpu-live.svg")
    const afterwards = join(dir, "multi-gpu-file.svg")
    const r = await runCli("simulate", multiGpu, "--json", "--timeline", live, "--events", events)
    expect(r.exitCode).toBe(0)
    // The group moved with P2P traffic running, and the fabric saw no write into a halted device.
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, verified: true, violations: 0 })

    const written = lines(events)
    expect(written[0]).toMatchObject({ _tag: "Run", format: 1, title: `lockstep simulate ${multiGpu}` })
    expect(written[0].source.devices.map((d: { id: string }) => d.id)).toEqual([
      ...Array.from({ length: 8 }, (_, i) => `gpu${i}`),
      "nic0"
    ])
    expect(written.at(-1)).toEqual({ _tag: "RunEnded", observed: { source: [], destination: [] } })
    const tags = new Set(written.slice(1, -1).map((e: { _tag: string }) => e._tag))
    for (const tag of ["PhaseStarted", "PhaseEnded", "GroupTransition", "RoundDone", "SwitchoverDecided", "Completed"])
      expect(tags).toContain(tag)

    const drawn = await runCli("timeline", events, afterwards)
    expect(drawn.stderr).toBe("")
    expect(drawn.exitCode).toBe(0)
    expect(drawn.stdout).toBe(`timeline: ${afterwards} (${written.length - 2} events)\n`)
    expect(readFileSync(afterwards, "utf8")).toBe(readFileSync(live, "utf8"))
  })

  it("draws a failed run the same way too: the failed arc, the rollback, the resets", async () => {
    const events = join(dir, "rollback.jsonl")
    const live = join(dir, "rollback-live.svg")
    const afterwards = join(dir, "rollback-file.svg")
    const r = await runCli("simulate", faultRollback, "--json", "--timeline", live, "--events", events)
    expect(r.exitCode).toBe(1)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, violations: 0 })
    const failed = lines(events).find(
      (e: { _tag: string; event?: { _tag: string } }) => e._tag === "GroupTransition" && e.event?._tag === "ArcFailed"
    )
    // The fault the scenario plants: gpu2's arc into STOP_COPY; its error is kept as its sentence.
    expect(failed.event).toMatchObject({ device: "gpu2", arc: { from: "PRE_COPY_P2P", to: "STOP_COPY" } })
    expect(typeof failed.event.error.message).toBe("string")
    expect((await runCli("timeline", events, afterwards)).exitCode).toBe(0)
    expect(readFileSync(afterwards, "utf8")).toBe(readFileSync(live, "utf8"))
  })

  it("names the line of a corrupted file and what is wrong with it, and exits 2", async () => {
    const events = join(dir, "good.jsonl")
    expect((await runCli("simulate", faultRollback, "--json", "--events", events)).exitCode).toBe(1)
    const text = readFileSync(events, "utf8").split("\n")

    const truncated = join(dir, "truncated.jsonl")
    writeFileSync(truncated, [...text.slice(0, 4), text[4]?.slice(0, 20), ...text.slice(5)].join("\n"))
    const r = await runCli("timeline", truncated, join(dir, "out.svg"))
    expect(r.exitCode).toBe(2)
    expect(r.stderr).toMatch(
      new RegExp(`^lockstep: ${truncated}, line 5: not a migration event \\(.+\\); give a file written by --events`)
    )

    // Valid JSON, but an arc's end is not a state.
    const arcLine = text.findIndex((line) => line.includes('"_tag":"ArcStarted"'))
    const wrongState = join(dir, "wrong-state.jsonl")
    writeFileSync(
      wrongState,
      text.map((line, i) => (i === arcLine ? line.replace(/"to":"[A-Z_]+"/, '"to":"HALTED"') : line)).join("\n")
    )
    const s = await runCli("timeline", wrongState, join(dir, "out.svg"))
    expect(s.exitCode).toBe(2)
    expect(s.stderr).toContain(`, line ${arcLine + 1}: not a migration event (`)
    // The reason names where in the line the bad value is.
    expect(s.stderr).toContain('at ["event"]["arc"]["to"]')

    const noHeader = join(dir, "no-header.jsonl")
    writeFileSync(noHeader, text.slice(1).join("\n"))
    const h = await runCli("timeline", noHeader, join(dir, "out.svg"))
    expect(h.exitCode).toBe(2)
    expect(h.stderr).toContain(", line 1: not the Run header an events file begins with (")
  })

  it("draws a run that stopped midway (no closing line) up to its last event, and says so", async () => {
    const events = join(dir, "good-2.jsonl")
    await runCli("simulate", multiGpu, "--json", "--events", events)
    const text = readFileSync(events, "utf8").trimEnd().split("\n")
    const cut = join(dir, "cut.jsonl")
    writeFileSync(cut, `${text.slice(0, Math.floor(text.length / 2)).join("\n")}\n`)
    const r = await runCli("timeline", cut, join(dir, "cut.svg"))
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain("the file has no closing line")
    expect(readFileSync(join(dir, "cut.svg"), "utf8")).toMatch(/^<\?xml/)
  })

  it("goes with migrate --local, and is refused on one side alone", async () => {
    const events = join(dir, "local.jsonl")
    const live = join(dir, "local-live.svg")
    const r = await runCli("migrate", "--local", multiGpu, "--json", "--timeline", live, "--events", events)
    expect(r.exitCode).toBe(0)
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, violations: 0 })
    const afterwards = join(dir, "local-file.svg")
    expect((await runCli("timeline", events, afterwards)).exitCode).toBe(0)
    expect(readFileSync(afterwards, "utf8")).toBe(readFileSync(live, "utf8"))

    const alone = await runCli("migrate", "--listen", "0", multiGpu, "--events", events)
    expect(alone.exitCode).toBe(2)
    expect(alone.stderr).toMatch(/^lockstep: --events goes with --local/)
  })
})
