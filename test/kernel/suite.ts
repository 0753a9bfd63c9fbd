/**
 * The kernel suite: runs inside the kernel VM (see run.ts), as one Node process, against the
 * kernel's own mtty driver. The judges are the kernel's log (one line per arc it executed) and
 * the devices' own state (FIFO bytes through their BARs), not Lockstep's events.
 *
 *   node test/kernel/suite.ts HOLDER      with MTTY_DEVICES set (15 mtty-1 devices)
 *
 * Prints one line per test and ends with `N passed, N failed`; exits 1 if any failed.
 */
import assert from "node:assert/strict"
import { spawn, spawnSync } from "node:child_process"
import { Console as NodeConsole } from "node:console"
import { mkdtempSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Writable } from "node:stream"
import { fileURLToPath } from "node:url"
import { NodeServices } from "@effect/platform-node"
import { main } from "@lockstep/cli"
import { AllFlags, path as fsmPath, isArc, type State, States, supportsState } from "@lockstep/fsm"
import type { VfioDevice } from "@lockstep/vfio"
import { Console, Effect, Result, Runtime } from "effect"
import { runCli } from "../../packages/cli/test/runCli.ts"
import { type LoggedArc, logMark, uuidOf } from "./KernelLog.ts"
import { cdevOf, createMtty, drainFifo, pushFifo, withDevice } from "./Mtty.ts"
import { p2pBreaches } from "./P2POrder.ts"
import { uapiTests } from "./uapi.ts"

const holder = process.argv[2] ?? ""
const devices = (process.env.MTTY_DEVICES ?? "").split(" ").filter((d) => d !== "")
const tmp = mkdtempSync(join(process.env.TMPDIR ?? "/tmp", "kernel-suite-"))
const cli = fileURLToPath(new URL("../../packages/cli/bin/lockstep.js", import.meta.url))

/**
 * The VM's devices: 15 mtty-1 (0 the FSM's; 1-3 and 4-6 a group and its destination, all
 * reused by uapi.ts; 7 a one-port destination; 8-10 the refused starts; 11-14 the signals)
 * and, at 15, an mtty-2.
 */
const dev = (i: number): string => {
  const d = i === 15 ? createdTwo : devices[i]
  if (d === undefined) throw new Error(`the suite needs 15 mtty-1 devices (MTTY_DEVICES has ${devices.length})`)
  return d
}

// ---- a small runner ---------------------------------------------------------------------------

const results: Array<{ readonly name: string; readonly ok: boolean }> = []
const test = async (name: string, body: () => Promise<void>): Promise<void> => {
  const started = Date.now()
  try {
    await body()
    results.push({ name, ok: true })
    console.log(`ok - ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
  } catch (error) {
    results.push({ name, ok: false })
    console.log(
      `not ok - ${name}\n  ${(error instanceof Error ? error.message : String(error)).split("\n").join("\n  ")}`
    )
  }
}

const scenario = (name: string, doc: unknown): string => {
  const file = join(tmp, `${name}.json`)
  writeFileSync(file, JSON.stringify(doc, null, 2))
  return file
}

/** A CLI run in this process that goes on while the caller does other things (a listening destination). */
const startCli = (...args: ReadonlyArray<string>) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const sink = (into: Array<string>) =>
    new Writable({
      write(chunk, _encoding, done) {
        into.push(String(chunk))
        done()
      }
    })
  const console = new NodeConsole({ stdout: sink(out), stderr: sink(err) })
  const done = Effect.runPromiseExit(
    main(args).pipe(Effect.provide(NodeServices.layer), Effect.provideService(Console.Console, console))
  ).then(
    (exit) =>
      new Promise<{ readonly stdout: string; readonly stderr: string; readonly exitCode: number }>((resolve) =>
        Runtime.defaultTeardown(exit, (exitCode) => resolve({ stdout: out.join(""), stderr: err.join(""), exitCode }))
      )
  )
  return { stderr: () => err.join(""), done }
}

const migrateLocal = async (file: string) => {
  const run = await runCli("migrate", "--local", file, "--json")
  const json: unknown = run.stdout.trim() === "" ? undefined : JSON.parse(run.stdout)
  return { ...run, json: json as Record<string, unknown> | undefined }
}

const arcText = (arcs: ReadonlyArray<LoggedArc>, names: ReadonlyMap<string, string>) =>
  arcs.map((a) => `${names.get(a.device) ?? a.device}: ${a.from} -> ${a.to}`).join(", ")

const resetAll = (paths: ReadonlyArray<string>) =>
  Promise.all(paths.map((p) => withDevice(p, (d) => Effect.andThen(d.reset, drainAll(d)))))

const drainAll = (d: VfioDevice) =>
  Effect.forEach([0, 1], (port) =>
    Effect.flatMap(d.regionInfo(port), (r) => (r.size > 0n ? drainFifo(d, port) : Effect.succeed([])))
  )

// ---- signals, started first so that their processes load while the rest runs -------------------

interface SignalOutcome {
  readonly code: number
  readonly afterSignalMs: number
  readonly output: string
}

/**
 * A migration in its own process, slowed by a bandwidth limit (mtty's state is tens of bytes),
 * and a shell beside it that sends the signal as soon as the kernel log shows the source
 * entering PRE_COPY, then times how long the process takes to exit. The shell does the
 * watching so that this process's own work cannot delay the signal or the timing.
 */
const signalRun = (signal: "INT" | "TERM", source: string, destination: string): Promise<SignalOutcome> => {
  const file = scenario(`signal-${signal}`, {
    devices: [{ id: "uart", kind: "mdev", vfio: { sysfsdev: source } }],
    destination: { devices: { uart: { vfio: { sysfsdev: destination } } } },
    migration: { bandwidthLimit: 1, downtimeLimitMs: 600_000 }
  })
  const script = [
    `"$0" "$1" migrate --local "$2" --json > /dev/null 2> "$2.err" & pid=$!`,
    `deadline=$(( $(date +%s) + 400 ))`,
    `until dmesg | grep -q "$3: mtty_step_state: 2 -> 6"; do`,
    `  [ "$(date +%s)" -lt "$deadline" ] || { echo "never reached PRE_COPY"; kill -9 $pid; exit 1; }`,
    `  sleep 0.5`,
    `done`,
    `t0=$(date +%s%N); kill -${signal} $pid; wait $pid; rc=$?; t1=$(date +%s%N)`,
    `echo "$rc $(( (t1 - t0) / 1000000 ))"; cat "$2.err"`
  ].join("\n")
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", script, process.execPath, cli, file, uuidOf(source)], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let output = ""
    child.stdout?.on("data", (chunk) => {
      output += String(chunk)
    })
    child.on("exit", () => {
      const [code, ms] = (output.split("\n")[0] ?? "").split(" ").map(Number)
      resolve({ code: code ?? -1, afterSignalMs: Number.isFinite(ms) ? (ms ?? -1) : -1, output })
    })
  })
}

// ---- the tests ----------------------------------------------------------------------------------

let createdTwo: string | undefined

const suite = async () => {
  createdTwo = createMtty("mtty-2", "6c6f636b-7374-4570-8000-0000000000f1")
  const signals = [
    { signal: "SIGINT", source: dev(11), destination: dev(12), outcome: signalRun("INT", dev(11), dev(12)) },
    { signal: "SIGTERM", source: dev(13), destination: dev(14), outcome: signalRun("TERM", dev(13), dev(14)) }
  ]
  const flags = AllFlags

  await test("mtty reports STOP_COPY, P2P and PRE_COPY through VFIO_DEVICE_FEATURE", () =>
    withDevice(dev(0), (d) =>
      Effect.sync(() => {
        assert.equal(d.flags, AllFlags)
        assert.equal(d.info.driver, "mtty")
      })
    ))

  await test("a group file's kernel device takes its flags from the kernel; declared flags that disagree are refused", async () => {
    const group = (flags?: ReadonlyArray<string>) =>
      scenario(`group-flags-${flags?.length ?? "none"}`, {
        devices: [{ id: "uart", kind: "mdev", ...(flags === undefined ? {} : { flags }), vfio: { sysfsdev: dev(0) } }]
      })
    const plan = await runCli("plan", group(), "--to", "STOP_COPY", "--json")
    assert.equal(plan.exitCode, 0, plan.stderr)
    assert.deepEqual(
      JSON.parse(plan.stdout).arcs.map((a: { readonly to: string }) => a.to),
      ["RUNNING_P2P", "STOP", "STOP_COPY"]
    )
    const wrong = await runCli("check", group(["STOP_COPY"]))
    assert.equal(wrong.exitCode, 2)
    assert.match(wrong.stderr, /devices\[0\]\.flags: declares STOP_COPY but the kernel reports STOP_COPY,P2P,PRE_COPY/)
  })

  await test("every kernel path equals @lockstep/fsm's, and every pair the FSM refuses is refused by the kernel", () =>
    withDevice(dev(0), (d) =>
      Effect.gen(function* () {
        // A valid stream of this device, so that RESUMING → STOP validates and paths out of RESUMING complete.
        yield* d.reset
        for (const s of ["RUNNING_P2P", "STOP", "STOP_COPY"] as const) yield* d.setState(s)
        const chunks: Array<Uint8Array> = []
        for (;;) {
          const r = yield* d.read(4096)
          if (r._tag !== "Chunk") break
          chunks.push(r.data)
        }
        const stream = Buffer.concat(chunks)
        const states = States.filter((s) => s !== "ERROR" && supportsState(flags, s))
        const problems: Array<string> = []
        const uuid = uuidOf(dev(0))
        for (const from of states) {
          for (const to of [...states, "ERROR" as State]) {
            yield* d.reset
            const walk = fsmPath("RUNNING", from, flags)
            if (Result.isFailure(walk)) throw new Error(`no path RUNNING → ${from}`)
            for (const s of walk.success.slice(1)) yield* d.setState(s)
            if (from === "RESUMING") yield* d.write(stream)
            const mark = logMark()
            const asked = yield* Effect.result(d.requestState(to))
            const logged = mark.since([dev(0)]).filter((a) => a.device === uuid)
            const after = yield* d.getState
            const expected = fsmPath(from, to, flags)
            const illegal = logged.filter((a) => !isArc(flags, a.from, a.to))
            if (illegal.length > 0)
              problems.push(
                `${from} → ${to}: the kernel logged arcs that are not single arcs: ${arcText(illegal, new Map())}`
              )
            if (Result.isSuccess(expected)) {
              const walked = logged.length === 0 ? [from] : [logged[0]?.from, ...logged.map((a) => a.to)]
              if (Result.isFailure(asked))
                problems.push(`${from} → ${to}: the kernel refused (${asked.failure.message})`)
              else if (JSON.stringify(walked) !== JSON.stringify(expected.success))
                problems.push(
                  `${from} → ${to}: kernel path ${walked.join(" → ")}, fsm path ${expected.success.join(" → ")}`
                )
              if (after !== to) problems.push(`${from} → ${to}: the device ended in ${after}`)
            } else {
              if (Result.isSuccess(asked)) problems.push(`${from} → ${to}: the FSM refuses it but the kernel accepted`)
              else if (asked.failure.reason._tag !== "ArcFailed" || asked.failure.reason.code !== "EINVAL")
                problems.push(`${from} → ${to}: refused, but not with EINVAL: ${asked.failure.message}`)
              if (logged.length > 0)
                problems.push(`${from} → ${to}: refused, yet the kernel logged ${arcText(logged, new Map())}`)
              if (after !== from) problems.push(`${from} → ${to}: refused, yet the device moved to ${after}`)
            }
          }
        }
        yield* d.reset
        assert.deepEqual(problems, [], problems.join("\n"))
      })
    ))

  for (const precopy of [true, false])
    await test(`a group of three mtty devices with P2P edges migrates ${precopy ? "with" : "without"} pre-copy; FIFO bytes arrive; the kernel log keeps the P2P order`, async () => {
      const ids = ["gpu0", "gpu1", "gpu2"]
      const src = [dev(1), dev(2), dev(3)]
      const dst = [dev(4), dev(5), dev(6)]
      const edges: ReadonlyArray<readonly [string, string]> = [
        ["gpu0", "gpu1"],
        ["gpu1", "gpu2"],
        ["gpu2", "gpu0"],
        ["gpu0", "gpu2"]
      ]
      await resetAll([...src, ...dst])
      const pushed = ids.map((_, i) => [0x40 + i, 0x50 + i, 0x60 + i, precopy ? 1 : 0])
      await Promise.all(src.map((p, i) => withDevice(p, (d) => pushFifo(d, 0, pushed[i] ?? []))))
      const file = scenario(`group-${precopy}`, {
        // mtty does no DMA; the devices are declared pci so that the planner orders P2P arcs the log can show.
        devices: ids.map((id, i) => ({ id, kind: "pci", vfio: { sysfsdev: src[i] } })),
        topology: { edges },
        destination: { devices: Object.fromEntries(ids.map((id, i) => [id, { vfio: { sysfsdev: dst[i] } }])) },
        migration: { precopy }
      })
      const mark = logMark()
      const run = await migrateLocal(file)
      assert.equal(run.exitCode, 0, `exit ${run.exitCode}: ${run.stdout}${run.stderr}`)
      assert.equal(run.json?.ok, true)
      assert.deepEqual(run.json?.final, {
        source: Object.fromEntries(ids.map((id) => [id, "STOP_COPY"])),
        destination: Object.fromEntries(ids.map((id) => [id, "RUNNING"]))
      })
      const name = new Map([...src.map((p, i) => [uuidOf(p), ids[i] ?? ""] as const)])
      const dstName = new Map([...dst.map((p, i) => [uuidOf(p), ids[i] ?? ""] as const)])
      const byId = (arcs: ReadonlyArray<LoggedArc>, names: ReadonlyMap<string, string>) =>
        arcs.map((a) => ({ ...a, device: names.get(a.device) ?? a.device }))
      const sourceArcs = byId(mark.since(src), name)
      const destinationArcs = byId(mark.since(dst), dstName)
      const running = Object.fromEntries(ids.map((id) => [id, "RUNNING" as const]))
      assert.deepEqual(p2pBreaches(running, edges, sourceArcs), [], `source: ${arcText(sourceArcs, new Map())}`)
      assert.deepEqual(
        p2pBreaches(running, edges, destinationArcs),
        [],
        `destination: ${arcText(destinationArcs, new Map())}`
      )
      assert.equal(
        sourceArcs.some((a) => a.to === "PRE_COPY"),
        precopy,
        `pre-copy ${precopy ? "expected" : "not expected"}: ${arcText(sourceArcs, new Map())}`
      )
      const popped = await Promise.all(dst.map((p) => withDevice(p, (d) => drainFifo(d, 0))))
      assert.deepEqual(popped, pushed)
      const left = await Promise.all(src.map((p) => withDevice(p, (d) => d.getState)))
      assert.deepEqual(left, ["STOP_COPY", "STOP_COPY", "STOP_COPY"])
      await resetAll(src)
    })

  await test("--listen and --connect migrate kernel devices over TCP", async () => {
    const [src, dst] = [dev(1), dev(4)]
    await resetAll([src, dst])
    await withDevice(src, (d) => pushFifo(d, 0, [0x71, 0x72]))
    const file = scenario("tcp", {
      devices: [{ id: "uart", kind: "mdev", vfio: { sysfsdev: src } }],
      destination: { devices: { uart: { vfio: { sysfsdev: dst } } } }
    })
    const destination = startCli("migrate", "--listen", "0", file, "--json")
    let port: string | undefined
    for (let i = 0; i < 600 && port === undefined; i++) {
      await new Promise((r) => setTimeout(r, 100))
      port = /listening on 127\.0\.0\.1:(\d+)/.exec(destination.stderr())?.[1]
    }
    assert.ok(port !== undefined, `the destination did not listen: ${destination.stderr()}`)
    const source = await runCli(
      "migrate",
      "--connect",
      `127.0.0.1:${port}`,
      "--journal",
      join(tmp, "journal.json"),
      file,
      "--json"
    )
    const received = await destination.done
    assert.equal(source.exitCode, 0, source.stdout + source.stderr)
    assert.equal(received.exitCode, 0, received.stdout + received.stderr)
    assert.deepEqual(JSON.parse(source.stdout).final, { uart: "STOP_COPY" })
    assert.deepEqual(JSON.parse(received.stdout).final, { uart: "RUNNING" })
    assert.deepEqual(await withDevice(dst, (d) => drainFifo(d, 0)), [0x71, 0x72])
    await resetAll([src, dst])
  })

  // mtty checks resuming data as it is written (mtty_resume_write): a write that would take the
  // stream past this device's size fails with ENOMEM; a header naming another port count fails
  // the write that completes it with EFAULT. Without pre-copy the whole two-port stream comes in
  // one write (ENOMEM); with it, the header comes first, alone (EFAULT).
  for (const [precopy, errno] of [
    [false, "ENOMEM"],
    [true, "EFAULT"]
  ] as const)
    await test(`a two-port stream into a one-port device fails in the kernel (${errno}${precopy ? ", with pre-copy" : ""}): the source rolls back with its FIFOs intact, the destination is reset and reported`, async () => {
      const two = precopy ? dev(15) : createMtty("mtty-2", "6c6f636b-7374-4570-8000-0000000000f2")
      const one = dev(7)
      await resetAll([one, two])
      const bytes = [
        [0x11, 0x12, 0x13],
        [0x21, 0x22]
      ]
      await withDevice(two, (d) => Effect.andThen(pushFifo(d, 0, bytes[0] ?? []), pushFifo(d, 1, bytes[1] ?? [])))
      const file = scenario(`too-big-${precopy}`, {
        devices: [{ id: "uart", kind: "mdev", vfio: { sysfsdev: two } }],
        destination: { devices: { uart: { vfio: { sysfsdev: one } } } },
        migration: { precopy }
      })
      const run = await migrateLocal(file)
      assert.equal(run.exitCode, 1, run.stdout + run.stderr)
      const json = run.json ?? {}
      const error = json.error as Record<string, unknown> | undefined
      assert.equal(json.ok, false)
      assert.equal(error?.device, "uart", JSON.stringify(error))
      assert.equal(error?.code, errno, JSON.stringify(error))
      assert.match(String(error?.message), new RegExp(`uart: write failed in RESUMING \\(${errno}\\)`))
      assert.deepEqual(json.final, { source: { uart: "RUNNING" }, destination: { uart: "STOP" } })
      assert.deepEqual(json.rollback, {
        source: { recovered: true },
        destination: { recovered: true, reset: true }
      })
      const source = await withDevice(two, (d) =>
        Effect.all({ state: d.getState, port0: drainFifo(d, 0), port1: drainFifo(d, 1) })
      )
      assert.deepEqual(source, { state: "RUNNING", port0: bytes[0], port1: bytes[1] })
      assert.equal(await withDevice(one, (d) => d.getState), "STOP")
      await resetAll([one])
    })

  await test("a source device left in PRE_COPY by a crashed process is refused before anything moves, naming it and its state", async () => {
    await resetAll([dev(8), dev(10)])
    const left = spawnSync(holder, ["leave", cdevOf(dev(8)), "6"], { encoding: "utf8" })
    assert.equal(left.status, 0, left.stderr)
    const file = scenario("crashed", {
      devices: [{ id: "uart", kind: "mdev", vfio: { sysfsdev: dev(8) } }],
      destination: { devices: { uart: { vfio: { sysfsdev: dev(10) } } } }
    })
    const mark = logMark()
    const run = await migrateLocal(file)
    assert.equal(run.exitCode, 1, run.stdout + run.stderr)
    assert.match(run.stderr, /kernel device uart .* is in PRE_COPY, not RUNNING/)
    assert.deepEqual(mark.since([dev(8), dev(10)]), [])
    assert.equal(await withDevice(dev(8), (d) => d.getState), "PRE_COPY")
    await resetAll([dev(8)])
  })

  await test("a device held by another process is refused before anything moves, naming the holder", async () => {
    await resetAll([dev(9)])
    const held = spawn(holder, ["hold", cdevOf(dev(9))], { stdio: ["ignore", "pipe", "inherit"] })
    await new Promise<void>((resolve, reject) => {
      held.stdout?.on("data", (chunk) => (String(chunk).includes("held") ? resolve() : undefined))
      held.on("exit", (code) => reject(new Error(`the holder exited (${code})`)))
    })
    try {
      const file = scenario("held", {
        devices: [{ id: "uart", kind: "mdev", vfio: { sysfsdev: dev(9) } }],
        destination: { devices: { uart: { vfio: { sysfsdev: dev(10) } } } }
      })
      const mark = logMark()
      const run = await migrateLocal(file)
      assert.equal(run.exitCode, 1, run.stdout + run.stderr)
      assert.match(run.stderr, new RegExp(`cannot open kernel device uart .* held by process ${held.pid} \\(holder\\)`))
      assert.deepEqual(mark.since([dev(9), dev(10)]), [])
    } finally {
      held.kill("SIGKILL")
    }
  })

  await uapiTests({ test, device: dev(0), sources: [dev(1), dev(2), dev(3)], destinations: [dev(4), dev(5), dev(6)] })

  for (const run of signals)
    await test(`${run.signal} during a kernel migration rolls it back: the source RUNNING, the destination reset and parked`, async () => {
      const outcome = await run.outcome
      console.log(
        `  ${run.signal}: exit ${outcome.code}, ${(outcome.afterSignalMs / 1000).toFixed(1)} s after the signal`
      )
      assert.ok(outcome.afterSignalMs >= 0, outcome.output)
      assert.notEqual(outcome.code, 0, outcome.output)
      assert.ok(outcome.afterSignalMs <= 10_000, `it took ${outcome.afterSignalMs} ms to stop`)
      assert.equal(await withDevice(run.source, (d) => d.getState), "RUNNING")
      assert.equal(await withDevice(run.destination, (d) => d.getState), "STOP")
    })

  const passed = results.filter((r) => r.ok).length
  console.log(`${passed} passed, ${results.length - passed} failed`)
  process.exitCode = passed === results.length ? 0 : 1
}

await suite()
