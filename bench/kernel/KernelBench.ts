/**
 * The kernel backend's figures, measured inside the kernel VM in one boot (see run.ts):
 *
 *   node bench/kernel/KernelBench.ts LOOP ADDON      with MTTY_DEVICES set
 *
 * - per ioctl: the plain C loop, an N-API addon, koffi bound with ioctl's fixed and variadic
 *   prototypes, and the backend's own `Native` (koffi, fixed, errno read on failure), each on
 *   GET MIG_DEVICE_STATE of the same device;
 * - per arc (RUNNING <-> RUNNING_P2P): the C loop doing the backend's ioctls (SET, then GET to
 *   check the state), and the backend's `Device.setState` through the `Device` port;
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
const rounds = 8
const per = iterations / 4

/**
 * µs per call of each of `calls`, measured in interleaved rounds (A, B, C, A, B, C, …) and
 * taking each one's best round: the least disturbed by the VM's other thread and the host's load.
 */
const perCall = <K extends string>(calls: Readonly<Record<K, () => void>>): Record<K, number> => {
  const entries = Object.entries(calls) as Array<[K, () => void]>
  const best = Object.fromEntries(entries.map(([k]) => [k, Number.POSITIVE_INFINITY])) as Record<K, number>
  for (let r = 0; r < rounds; r++)
    for (const [k, call] of entries) {
      const t0 = now()
      for (let i = 0; i < per; i++) call()
      best[k] = Math.min(best[k], (now() - t0) / per)
    }
  return best
}

interface CFigures {
  readonly getStateUs: number
  readonly setOnlyUs: number
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

interface Koffi {
  readonly load: (path: null) => { readonly func: (d: string) => (...args: ReadonlyArray<unknown>) => unknown }
}

/** Per-ioctl cost through each binding, on a device this script binds itself. */
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
  const require = createRequire(import.meta.url)
  const addon = require(addonPath) as { readonly ioctl: (fd: number, request: number, buf: Uint8Array) => number }
  const libc = (require("koffi") as Koffi).load(null)
  const fixed = libc.func("int ioctl(int fd, unsigned long request, void *arg)")
  const variadic = libc.func("int ioctl(int fd, unsigned long request, ...)")
  const req = Uapi.Ioctl.DEVICE_FEATURE
  const figures = perCall({
    napiUs: () => addon.ioctl(fd, req, get),
    koffiFixedUs: () => fixed(fd, req, get),
    koffiVariadicUs: () => variadic(fd, req, "uint8_t *", get),
    nativeUs: () => n.ioctl(fd, req, get)
  })
  n.close(fd)
  n.close(iommufd)
  return figures
}

/** The backend's own figures, through the `Device` port. */
const backendFigures = Effect.scoped(
  Effect.gen(function* () {
    const d = yield* openVfioDevice({ cdev })
    yield* d.reset
    // Best of interleaved rounds, as for the raw calls.
    let getStateUs = Number.POSITIVE_INFINITY
    let arcUs = Number.POSITIVE_INFINITY
    for (let r = 0; r < rounds; r++) {
      const t0 = now()
      for (let i = 0; i < per; i++) yield* d.getState
      getStateUs = Math.min(getStateUs, (now() - t0) / per)
      const t1 = now()
      for (let i = 0; i < per / 2; i++) {
        yield* d.setState("RUNNING_P2P")
        yield* d.setState("RUNNING")
      }
      arcUs = Math.min(arcUs, (now() - t1) / per)
    }
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
  const row = (name: string, value: number, unit: string, floor?: number, goal = "") =>
    console.log(
      `${name.padEnd(48)}${`${value.toFixed(2)} ${unit}`.padStart(13)}  ${floor === undefined ? "" : `${(value / floor).toFixed(2)} × C${goal}`}`
    )
  console.log(
    `kernel backend on mtty (${cdev}): best of ${rounds} interleaved rounds of ${per} calls; ${sessions} saving + resuming sessions of ${c.sessionBytes} bytes`
  )
  row("ioctl, C loop", c.getStateUs, "µs")
  row("ioctl, N-API addon (not shipped)", ffi.napiUs, "µs", c.getStateUs)
  row("ioctl, koffi, fixed prototype", ffi.koffiFixedUs, "µs", c.getStateUs)
  row("ioctl, koffi, variadic prototype", ffi.koffiVariadicUs, "µs", c.getStateUs)
  row("ioctl, the backend's Native (koffi, fixed)", ffi.nativeUs, "µs", c.getStateUs)
  row("getState through the Device port", backend.getStateUs, "µs", c.getStateUs)
  row("arc, C loop (one SET alone)", c.setOnlyUs, "µs")
  row("arc, C loop (SET, GET: the backend's ioctls)", c.arcUs, "µs")
  row("arc through the Device port (SET, GET)", backend.arcUs, "µs", c.arcUs, " (goal ≤ 2)")
  row("data_fd read, C loop", c.readMBps, "MB/s")
  row("data_fd read through the Device port", backend.readMBps, "MB/s", c.readMBps)
  row("data_fd write, C loop", c.writeMBps, "MB/s")
  row("data_fd write through the Device port", backend.writeMBps, "MB/s", c.writeMBps)
  console.log(JSON.stringify({ c, ffi, backend }))
}

await main()
