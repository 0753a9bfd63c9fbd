/**
 * The kernel backend's figures, measured inside the kernel VM in one boot (see run.ts):
 *
 *   node bench/kernel/KernelBench.ts LOOP ADDON      with MTTY_DEVICES set
 *
 * - per ioctl: the plain C loop, koffi (what @lockstep/vfio ships), and an N-API addon (the
 *   alternative it was chosen against), each on GET MIG_DEVICE_STATE of the same device;
 * - per arc (RUNNING <-> RUNNING_P2P): the C loop, and the backend's `Device.setState` (which
 *   reads the state before the arc and checks it after, three ioctls per arc);
 * - data_fd MB/s: time spent in read() over whole saving sessions and in write() over resuming
 *   sessions, in C and through the backend's `read` / `write`.
 *
 * Prints a table and one JSON line. Figures are printed, never asserted.
 */
import { spawnSync } from "node:child_process"
import { createRequire } from "node:module"
import { nativeAccess, OpenReadWrite, openVfioDevice, Uapi } from "@lockstep/vfio"
import { Effect, Result } from "effect"

const [loopBin = "", addonPath = ""] = process.argv.slice(2)
const device = (process.env.MTTY_DEVICES ?? "").split(" ")[0] ?? ""
const cdev = `/dev/vfio/devices/${spawnSync("ls", [`${device}/vfio-dev`], { encoding: "utf8" }).stdout.trim()}`
const iterations = 20_000
const sessions = 500

const now = () => performance.now() * 1000

/** Best of `rounds` timings of `n` calls, in µs per call: the least disturbed by the other VM thread. */
const perCall = (n: number, rounds: number, call: () => void): number => {
  let best = Number.POSITIVE_INFINITY
  for (let r = 0; r < rounds; r++) {
    const t0 = now()
    for (let i = 0; i < n; i++) call()
    best = Math.min(best, (now() - t0) / n)
  }
  return best
}

interface CFigures {
  readonly getStateUs: number
  readonly arcUs: number
  readonly readMBps: number
  readonly writeMBps: number
  readonly sessionBytes: number
}

const cLoop = (): CFigures => {
  const out = spawnSync(loopBin, [cdev, String(iterations), String(sessions)], { encoding: "utf8" })
  if (out.status !== 0) throw new Error(`the C loop failed: ${out.stderr}`)
  return JSON.parse(out.stdout) as CFigures
}

/** Per-ioctl cost through koffi and through the N-API addon, on a device this script binds itself. */
const ffiFigures = () => {
  const native = nativeAccess()
  if (Result.isFailure(native)) throw new Error(native.failure)
  const n = native.success
  const fd = n.open(cdev, OpenReadWrite)
  const iommufd = n.open("/dev/iommu", OpenReadWrite)
  const bind = new Uint8Array(Uapi.BindIommufd.size)
  Uapi.encode(Uapi.BindIommufd, bind, { argsz: bind.length, iommufd })
  const ioas = new Uint8Array(Uapi.IoasAlloc.size)
  Uapi.encode(Uapi.IoasAlloc, ioas, { size: ioas.length })
  if (n.ioctl(fd, Uapi.Ioctl.DEVICE_BIND_IOMMUFD, bind) < 0 || n.ioctl(iommufd, Uapi.Ioctl.IOMMU_IOAS_ALLOC, ioas) < 0)
    throw new Error("could not bind the device")
  const attach = new Uint8Array(Uapi.AttachIommufdPt.size)
  Uapi.encode(Uapi.AttachIommufdPt, attach, {
    argsz: attach.length,
    pt_id: Uapi.u32(Uapi.IoasAlloc, ioas, "out_ioas_id")
  })
  n.ioctl(fd, Uapi.Ioctl.DEVICE_ATTACH_IOMMUFD_PT, attach)
  const get = Uapi.featureBuffer(Uapi.Feature.MIG_DEVICE_STATE, Uapi.FeatureOp.GET, Uapi.FeatureMigState)
  const addon = createRequire(import.meta.url)(addonPath) as {
    readonly ioctl: (fd: number, request: number, buf: Uint8Array) => number
  }
  const koffiUs = perCall(iterations, 3, () => n.ioctl(fd, Uapi.Ioctl.DEVICE_FEATURE, get))
  const napiUs = perCall(iterations, 3, () => addon.ioctl(fd, Uapi.Ioctl.DEVICE_FEATURE, get))
  n.close(fd)
  n.close(iommufd)
  return { koffiUs, napiUs }
}

/** The backend's own figures, through the `Device` port. */
const backendFigures = Effect.scoped(
  Effect.gen(function* () {
    const d = yield* openVfioDevice({ cdev })
    yield* d.reset
    const t0 = now()
    for (let i = 0; i < iterations; i++) yield* d.getState
    const getStateUs = (now() - t0) / iterations
    const t1 = now()
    for (let i = 0; i < iterations; i++) {
      yield* d.setState("RUNNING_P2P")
      yield* d.setState("RUNNING")
    }
    const arcUs = (now() - t1) / (2 * iterations)
    let readUs = 0
    let writeUs = 0
    let bytes = 0
    for (let s = 0; s < sessions; s++) {
      for (const st of ["RUNNING_P2P", "STOP", "STOP_COPY"] as const) yield* d.setState(st)
      const chunks: Array<Uint8Array> = []
      for (;;) {
        const r0 = now()
        const r = yield* d.read(65536)
        readUs += now() - r0
        if (r._tag !== "Chunk") break
        chunks.push(r.data)
      }
      const stream = Buffer.concat(chunks)
      bytes += stream.length
      yield* d.setState("STOP")
      yield* d.setState("RESUMING")
      const w0 = now()
      yield* d.write(stream)
      writeUs += now() - w0
      for (const st of ["STOP", "RUNNING_P2P", "RUNNING"] as const) yield* d.setState(st)
    }
    return { getStateUs, arcUs, readMBps: bytes / readUs, writeMBps: bytes / writeUs }
  })
)

const main = async () => {
  // Warm the JIT and the page cache before anything is timed.
  await Effect.runPromise(Effect.scoped(Effect.flatMap(openVfioDevice({ cdev }), (d) => d.getState)))
  const c = cLoop()
  const ffi = ffiFigures()
  const backend = await Effect.runPromise(backendFigures)
  const row = (name: string, value: string, vs: string) => console.log(`${name.padEnd(44)}${value.padStart(14)}  ${vs}`)
  console.log(
    `kernel backend on mtty (${cdev}), ${iterations} calls, ${sessions} saving + resuming sessions of ${c.sessionBytes} bytes`
  )
  row("ioctl, C loop", `${c.getStateUs.toFixed(2)} µs`, "")
  row("ioctl, koffi (shipped)", `${ffi.koffiUs.toFixed(2)} µs`, `${(ffi.koffiUs / c.getStateUs).toFixed(2)} × C`)
  row(
    "ioctl, N-API addon (not shipped)",
    `${ffi.napiUs.toFixed(2)} µs`,
    `${(ffi.napiUs / c.getStateUs).toFixed(2)} × C`
  )
  row(
    "getState through the Device port",
    `${backend.getStateUs.toFixed(2)} µs`,
    `${(backend.getStateUs / c.getStateUs).toFixed(2)} × C`
  )
  row("arc, C loop (one SET)", `${c.arcUs.toFixed(2)} µs`, "")
  row(
    "arc through the Device port (GET, SET, GET)",
    `${backend.arcUs.toFixed(2)} µs`,
    `${(backend.arcUs / c.arcUs).toFixed(2)} × C (goal ≤ 2)`
  )
  row("data_fd read, C loop", `${c.readMBps.toFixed(2)} MB/s`, "")
  row(
    "data_fd read through the Device port",
    `${backend.readMBps.toFixed(2)} MB/s`,
    `${(backend.readMBps / c.readMBps).toFixed(2)} × C`
  )
  row("data_fd write, C loop", `${c.writeMBps.toFixed(2)} MB/s`, "")
  row(
    "data_fd write through the Device port",
    `${backend.writeMBps.toFixed(2)} MB/s`,
    `${(backend.writeMBps / c.writeMBps).toFixed(2)} × C`
  )
  console.log(JSON.stringify({ c, ffi, backend }))
}

await main()
