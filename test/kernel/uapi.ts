/**
 * The kernel suite's checks of the backend's uAPI calls one by one, against mtty: `lockstep vfio
 * info` by sysfs path and by cdev, region info and region reads and writes,
 * `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`, `VFIO_MIG_GET_PRECOPY_INFO` and the data_fd, and the
 * `bytes` and `downtimeMs` of `migrate --local --json`.
 *
 * The expected values come from what Linux 6.12's `samples/vfio-mdev/mtty.c` defines (its
 * device info, region table, 16550 registers and the layout of its migration stream), from
 * sysfs, from the kernel's own log (mtty's dev_dbg lines: every arc, every save read and every
 * resume write) and from bytes read back from the device; never from Lockstep's output.
 * Registered by suite.ts, which runs it in the kernel VM.
 */
import assert from "node:assert/strict"
import { mkdtempSync, readFileSync, readlinkSync, realpathSync, statSync, writeFileSync } from "node:fs"
import { basename, join } from "node:path"
import { openVfioDevice, type VfioDevice } from "@lockstep/vfio"
import { Effect } from "effect"
import { runCli } from "../../packages/cli/test/runCli.ts"
import { dataMark, type LoggedArc, logMark, type StateName, uuidOf } from "./KernelLog.ts"
import { cdevOf, drainFifo, pushFifo, withDevice } from "./Mtty.ts"

/** What suite.ts gives: its runner and idle mtty-1 devices. */
export interface UapiSuite {
  readonly test: (name: string, body: () => Promise<void>) => Promise<void>
  /** One mtty-1 device for the single-device checks. */
  readonly device: string
  /** Three mtty-1 devices to migrate from, and three to migrate into. */
  readonly sources: ReadonlyArray<string>
  readonly destinations: ReadonlyArray<string>
}

// ---- what mtty.c defines ------------------------------------------------------------------------

/** `struct mtty_data` before `ports`: u64 magic, then u32 major_ver, minor_ver, nr_ports, flags. */
const headerBytes = 8 + 4 * 4

/**
 * `struct serial_port`: u8 uart_reg[8] (0-7); struct rxtx { u8 fifo[16]; u8 head, tail, count }
 * (8-26); bool dlab (27), overrun (28); u16 divisor (30, 2-aligned); u8 fcr (32),
 * max_fifo_size (33), intr_trigger_level (34); padded to its 2-byte alignment: 36.
 */
const portBytes = 36
const port = { uartReg: 0, fifo: 8, head: 24, tail: 25, count: 26, fcr: 32, maxFifoSize: 33, triggerLevel: 34 }

/** `mtty_data_size()`: what MIG_DATA_SIZE reports and STOP_COPY's stream holds, for one port. */
const dataSize = headerBytes + 1 * portBytes

/** `MTTY_MAGIC`, `MTTY_MAJOR_VER`, `MTTY_MINOR_VER`. */
const magic = 0x7e9d09898c3e2c4en
const majorVersion = 1
const minorVersion = 0

/** `MAX_FIFO_SIZE`: the loop-back FIFO of each port. */
const fifoDepth = 16

/**
 * `mtty_ioctl_get_region_info` for an mtty-1: VFIO_PCI_NUM_REGIONS (9) regions at
 * `index << MTTY_VFIO_PCI_OFFSET_SHIFT` (40), all READ|WRITE; BAR0 is MTTY_IO_BAR_SIZE (8),
 * config space MTTY_CONFIG_SPACE_SIZE (0xff), BAR1 only for two ports, the rest 0.
 */
const regionCount = 9
const regionSize = (index: number): number => (index === 0 ? 8 : index === 7 ? 0xff : 0)
const regionOffset = (index: number): number => index * 2 ** 40

/** `VFIO_PCI_*_REGION_INDEX` of the uAPI. */
const pciRegionIndexNames = ["BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "CONFIG", "VGA"]

/** `mtty_create_config_space`: the PCI id at 0 (LE u32), and prog-if, subclass, class at 9-11. */
const pciId = 0x32534348
const classBytes = [0x02, 0x00, 0x07]

/** 16550 registers of `uapi/linux/serial_reg.h` as mtty.c serves them. */
const Uart = { THR: 0n, FCR: 2n, LSR: 5n, SCR: 7n } as const
/** UART_FCR_ENABLE_FIFO | UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT: empties the FIFO. */
const fcrClear = 0x07
/** UART_LSR_DR, UART_LSR_OE, UART_LSR_THRE | UART_LSR_TEMT (mtty sets both when the FIFO is empty). */
const Lsr = { dataReady: 0x01, overrun: 0x02, empty: 0x60 } as const

// ---- helpers ------------------------------------------------------------------------------------

const tmp = mkdtempSync(join(process.env.TMPDIR ?? "/tmp", "kernel-uapi-"))

const byte = (d: VfioDevice, offset: bigint) => Effect.map(d.regionRead(0, offset, 1), (b) => b[0] ?? -1)
const writeByte = (d: VfioDevice, offset: bigint, value: number) => d.regionWrite(0, offset, new Uint8Array([value]))

/** Reset to RUNNING, with an empty FIFO and SCR 0, so that every check starts from one state. */
const fresh = (d: VfioDevice) =>
  Effect.gen(function* () {
    yield* d.reset
    yield* writeByte(d, Uart.FCR, fcrClear)
    yield* writeByte(d, Uart.SCR, 0)
  })

/** Every chunk the data_fd gives until it has none (pre-copy) or ends (STOP_COPY). */
const readAll = (d: VfioDevice, maxBytes = 4096) =>
  Effect.gen(function* () {
    const chunks: Array<Uint8Array> = []
    for (;;) {
      const r = yield* d.read(maxBytes)
      if (r._tag !== "Chunk") return { data: Buffer.concat(chunks), end: r._tag }
      chunks.push(r.data)
    }
  })

/** The header mtty.c writes at the start of every saving stream, for a device of `ports` ports. */
const expectedHeader = (ports: number): Buffer => {
  const b = Buffer.alloc(headerBytes)
  b.writeBigUInt64LE(magic, 0)
  b.writeUInt32LE(majorVersion, 8)
  b.writeUInt32LE(minorVersion, 12)
  b.writeUInt32LE(ports, 16)
  b.writeUInt32LE(0, 20)
  return b
}

/**
 * The fields of a saved `struct serial_port` that the tests set through the BAR. The FIFO's
 * bytes are the `count` from `tail` (clearing it resets head, tail and count, not the array).
 */
const portFields = (b: Buffer) => ({
  scr: b[port.uartReg + 7],
  fifo: [...b.subarray(port.fifo + (b[port.tail] ?? 0), port.fifo + (b[port.tail] ?? 0) + (b[port.count] ?? 0))],
  head: b[port.head],
  tail: b[port.tail],
  count: b[port.count],
  fcr: b[port.fcr],
  maxFifoSize: b[port.maxFifoSize],
  triggerLevel: b[port.triggerLevel]
})

/** What the port holds after `fresh`, SCR set to `scr` and `pushed` written to THR. */
const expectedPort = (scr: number, pushed: ReadonlyArray<number>) => ({
  scr,
  fifo: [...pushed],
  head: pushed.length,
  tail: 0,
  count: pushed.length,
  fcr: fcrClear,
  maxFifoSize: fifoDepth,
  // FCR writes set intr_trigger_level to 1 whatever the trigger bits.
  triggerLevel: 1
})

const arcs = (logged: ReadonlyArray<LoggedArc>) => logged.map((a) => `${a.from} -> ${a.to}`)

/** The state the kernel's log last put a device in. */
const lastLogged = (logged: ReadonlyArray<LoggedArc>, sysfsdev: string): StateName | undefined =>
  logged.filter((a) => a.device === uuidOf(sysfsdev)).at(-1)?.to

/** `/dev/vfio/devices/vfioN` of a device, N from sysfs, checked against the node's major:minor. */
const cdevFromSysfs = (sysfsdev: string): string => {
  const cdev = cdevOf(sysfsdev)
  const [major, minor] = readFileSync(`/sys/class/vfio-dev/${basename(cdev)}/dev`, "utf8")
    .trim()
    .split(":")
    .map(BigInt)
  const rdev = statSync(cdev, { bigint: true }).rdev
  // Linux's dev_t: major in bits 8-19 and 32-43, minor in bits 0-7 and 12-31.
  assert.equal((rdev >> 8n) & 0xfffn, major, `${cdev} is not the device sysfs names`)
  assert.equal((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn), minor, `${cdev} is not the device sysfs names`)
  return cdev
}

interface InfoJson {
  readonly cdev: string
  readonly sysfsdev: string | null
  readonly driver: string | null
  readonly mdevType: string | null
  readonly device: { readonly flags: ReadonlyArray<string>; readonly numRegions: number; readonly numIrqs: number }
  readonly regions: ReadonlyArray<{
    readonly index: number
    readonly name?: string
    readonly flags: ReadonlyArray<string>
    readonly size: number
    readonly offset: number
  }>
  readonly migration: { readonly flags: ReadonlyArray<string>; readonly state: string; readonly stopCopyLength: number }
}

const vfioInfo = async (...path: ReadonlyArray<string>): Promise<InfoJson> => {
  const run = await runCli("vfio", "info", ...path, "--json")
  assert.equal(run.exitCode, 0, run.stdout + run.stderr)
  return JSON.parse(run.stdout) as InfoJson
}

/** What `vfio info --json` must say of an mtty-1 in `state`, by mtty.c and the uAPI. */
const expectedInfo = (state: StateName | undefined) => ({
  device: { flags: ["PCI"], numRegions: regionCount, numIrqs: 5 },
  regions: Array.from({ length: regionCount }, (_, index) => ({
    index,
    name: pciRegionIndexNames[index],
    flags: ["READ", "WRITE"],
    size: regionSize(index),
    offset: regionOffset(index)
  })),
  // Linux 6.12 has no VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 to opt in to.
  migration: { flags: ["STOP_COPY", "P2P", "PRE_COPY"], state, stopCopyLength: dataSize, precopyInfoV2: false }
})

const scenario = (name: string, doc: unknown): string => {
  const file = join(tmp, `${name}.json`)
  writeFileSync(file, JSON.stringify(doc, null, 2))
  return file
}

// ---- the tests ----------------------------------------------------------------------------------

export const uapiTests = async ({ test, device, sources, destinations }: UapiSuite): Promise<void> => {
  await test("`vfio info --sysfsdev --json` reports mtty.c's device (PCI, 9 regions, 5 irqs, BAR0 8 bytes, config 255), STOP_COPY+P2P+PRE_COPY, MIG_DATA_SIZE 60, and the state the kernel logged", async () => {
    const mark = logMark()
    await withDevice(device, (d) =>
      Effect.gen(function* () {
        yield* fresh(d)
        yield* d.setState("RUNNING_P2P")
        yield* d.setState("STOP")
      })
    )
    const moved = mark.since([device])
    const state = lastLogged(moved, device)
    assert.equal(state, "STOP", arcs(moved).join(", "))
    const quiet = logMark()
    const info = await vfioInfo("--sysfsdev", device)
    assert.deepEqual(quiet.since([device]), [], "vfio info moved the device")
    assert.deepEqual({ device: info.device, regions: info.regions, migration: info.migration }, expectedInfo(state))
    assert.deepEqual(
      { cdev: info.cdev, sysfsdev: info.sysfsdev, driver: info.driver, mdevType: info.mdevType },
      {
        cdev: cdevFromSysfs(device),
        sysfsdev: device,
        driver: basename(readlinkSync(join(device, "driver"))),
        mdevType: basename(readlinkSync(join(device, "mdev_type")))
      }
    )
    await withDevice(device, (d) => d.reset)
  })

  await test("a device opened by --cdev /dev/vfio/devices/vfioN (N from sysfs) is the sysfs path's: vfio info finds its sysfs directory, and its arcs and FIFO bytes land on that device", async () => {
    const cdev = cdevFromSysfs(device)
    await withDevice(device, fresh)
    const info = await vfioInfo("--cdev", cdev)
    assert.equal(info.cdev, cdev)
    assert.equal(realpathSync(info.sysfsdev ?? ""), realpathSync(device))
    assert.deepEqual({ device: info.device, regions: info.regions, migration: info.migration }, expectedInfo("RUNNING"))
    const mark = logMark()
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const d = yield* openVfioDevice({ cdev })
          yield* pushFifo(d, 0, [0x61, 0x62])
          yield* d.setState("RUNNING_P2P")
        })
      )
    )
    assert.deepEqual(arcs(mark.since([device])), ["RUNNING -> RUNNING_P2P"])
    assert.deepEqual(await withDevice(device, (d) => drainFifo(d, 0)), [0x61, 0x62])
    await withDevice(device, (d) => d.reset)
  })

  await test("region info, reads and writes follow mtty.c: 9 regions at index << 40, config space ids, SCR keeps a byte, THR fills the 16-byte FIFO (LSR DR; OE past 16), RBR pops in order, region 9 refused (EINVAL)", () =>
    withDevice(device, (d) =>
      Effect.gen(function* () {
        yield* fresh(d)
        for (let index = 0; index < regionCount; index++) {
          const r = yield* d.regionInfo(index)
          assert.deepEqual(
            { index: r.index, size: r.size, offset: r.offset, flags: r.flags },
            // VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
            { index, size: BigInt(regionSize(index)), offset: BigInt(regionOffset(index)), flags: 0b11 },
            `region ${index}`
          )
        }
        const beyond = yield* Effect.flip(d.regionInfo(regionCount))
        assert.equal(
          beyond.reason._tag === "RegionAccessFailed" ? beyond.reason.code : beyond.reason._tag,
          "EINVAL",
          beyond.message
        )
        const id = yield* d.regionRead(7, 0n, 4)
        assert.equal(Buffer.from(id).readUInt32LE(0), pciId)
        assert.deepEqual([...(yield* d.regionRead(7, 9n, 3))], classBytes)
        for (const v of [0xa5, 0x5a]) {
          yield* writeByte(d, Uart.SCR, v)
          assert.equal(yield* byte(d, Uart.SCR), v)
        }
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty)
        yield* writeByte(d, Uart.THR, 0x31)
        assert.equal(yield* byte(d, Uart.LSR), Lsr.dataReady)
        assert.deepEqual(yield* drainFifo(d, 0), [0x31])
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty)
        // mtty tells data from no data by head != tail, so 15 bytes are the most it shows.
        const many = Array.from({ length: fifoDepth - 1 }, (_, i) => 0x40 + i)
        yield* pushFifo(d, 0, many)
        assert.equal(yield* byte(d, Uart.LSR), Lsr.dataReady)
        assert.deepEqual(yield* drainFifo(d, 0), many)
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty)
        // 16 bytes fill the FIFO and bring head round to tail (so LSR says empty); the 17th
        // finds count at MAX_FIFO_SIZE and overruns.
        yield* writeByte(d, Uart.FCR, fcrClear)
        yield* pushFifo(
          d,
          0,
          Array.from({ length: fifoDepth }, (_, i) => 0x50 + i)
        )
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty)
        yield* pushFifo(d, 0, [0x01])
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty | Lsr.overrun)
        // FCR clears the FIFO; the next byte that fits clears the overrun.
        yield* writeByte(d, Uart.FCR, fcrClear)
        yield* pushFifo(d, 0, [0x03])
        assert.equal(yield* byte(d, Uart.LSR), Lsr.dataReady)
        assert.deepEqual(yield* drainFifo(d, 0), [0x03])
        assert.equal(yield* byte(d, Uart.LSR), Lsr.empty)
        yield* fresh(d)
      })
    ))

  await test("MIG_DATA_SIZE (60, mtty_data_size of one port) is what STOP_COPY's data_fd yields: mtty's header, then the port with its SCR and FIFO bytes; the stream resumes into the device and the FIFO comes back", async () => {
    const pushed = [0x31, 0x32, 0x33]
    const arcsMark = logMark()
    const data = dataMark()
    const stream = await withDevice(device, (d) =>
      Effect.gen(function* () {
        yield* fresh(d)
        yield* writeByte(d, Uart.SCR, 0xa5)
        yield* pushFifo(d, 0, pushed)
        assert.equal(yield* d.stopCopyLength, dataSize)
        for (const s of ["RUNNING_P2P", "STOP", "STOP_COPY"] as const) yield* d.setState(s)
        assert.equal(yield* d.stopCopyLength, dataSize, "MIG_DATA_SIZE in STOP_COPY")
        // mtty answers VFIO_MIG_GET_PRECOPY_INFO only in PRE_COPY and PRE_COPY_P2P.
        const info = yield* Effect.flip(d.precopyDetails)
        assert.equal("code" in info.reason ? info.reason.code : undefined, "EINVAL", info.message)
        const all = yield* readAll(d)
        assert.equal(all.end, "End")
        return all.data
      })
    )
    const saved = data.since(device)
    assert.equal(stream.length, dataSize)
    assert.equal(saved.saved, dataSize, "the bytes mtty_save_read returned")
    assert.deepEqual(saved.filledTo, [dataSize], "mtty_save_state's fill")
    assert.deepEqual(stream.subarray(0, headerBytes), expectedHeader(1))
    assert.deepEqual(portFields(stream.subarray(headerBytes)), expectedPort(0xa5, pushed))
    assert.deepEqual(arcs(arcsMark.since([device])), [
      "RUNNING -> RUNNING_P2P",
      "RUNNING_P2P -> STOP",
      "STOP -> STOP_COPY"
    ])
    const resumed = dataMark()
    const back = await withDevice(device, (d) =>
      Effect.gen(function* () {
        yield* d.setState("STOP")
        yield* d.setState("RESUMING")
        yield* writeByte(d, Uart.FCR, fcrClear)
        yield* writeByte(d, Uart.SCR, 0)
        yield* d.write(stream)
        for (const s of ["STOP", "RUNNING_P2P", "RUNNING"] as const) yield* d.setState(s)
        return { scr: yield* byte(d, Uart.SCR), fifo: yield* drainFifo(d, 0) }
      })
    )
    assert.equal(resumed.since(device).resumed, dataSize, "the bytes mtty_resume_write took")
    assert.deepEqual(back, { scr: 0xa5, fifo: pushed })
    await withDevice(device, fresh)
  })

  await test("VFIO_MIG_GET_PRECOPY_INFO tracks the pre-copy data_fd: initial_bytes is mtty's 24-byte header less what was read, dirty_bytes 0, 0 once drained (read returns 0); the same fd carries the 36-byte port after PRE_COPY_P2P -> STOP_COPY", async () => {
    const pushed = [0x41]
    const arcsMark = logMark()
    const data = dataMark()
    const seen = await withDevice(device, (d) =>
      Effect.gen(function* () {
        yield* fresh(d)
        yield* pushFifo(d, 0, pushed)
        yield* d.setState("PRE_COPY")
        const atStart = yield* d.precopyDetails
        const first = yield* d.read(10)
        const afterTen = yield* d.precopyDetails
        const rest = yield* readAll(d)
        const drained = yield* d.precopyDetails
        const size = yield* d.stopCopyLength
        yield* d.setState("PRE_COPY_P2P")
        const inP2p = yield* d.precopyDetails
        yield* d.setState("STOP_COPY")
        const final = yield* readAll(d)
        return {
          atStart: [atStart.initialBytes, atStart.dirtyBytes],
          firstRead: first._tag === "Chunk" ? first.data.length : first._tag,
          afterTen: [afterTen.initialBytes, afterTen.dirtyBytes],
          precopy: Buffer.concat([first._tag === "Chunk" ? first.data : new Uint8Array(0), rest.data]),
          precopyEnd: rest.end,
          drained: [drained.initialBytes, drained.dirtyBytes],
          inP2p: [inP2p.initialBytes, inP2p.dirtyBytes],
          size,
          stopCopy: final.data,
          stopCopyEnd: final.end
        }
      })
    )
    assert.deepEqual(
      {
        atStart: seen.atStart,
        firstRead: seen.firstRead,
        afterTen: seen.afterTen,
        precopyEnd: seen.precopyEnd,
        drained: seen.drained,
        inP2p: seen.inP2p,
        size: seen.size,
        stopCopyLength: seen.stopCopy.length,
        stopCopyEnd: seen.stopCopyEnd
      },
      {
        atStart: [headerBytes, 0],
        firstRead: 10,
        afterTen: [headerBytes - 10, 0],
        precopyEnd: "NoData",
        drained: [0, 0],
        inP2p: [0, 0],
        size: dataSize,
        stopCopyLength: portBytes,
        stopCopyEnd: "End"
      }
    )
    assert.deepEqual(seen.precopy, expectedHeader(1))
    assert.deepEqual(portFields(seen.stopCopy), expectedPort(0, pushed))
    const logged = data.since(device)
    assert.equal(logged.saved, headerBytes + portBytes, "the bytes mtty_save_read returned")
    assert.deepEqual(logged.filledTo, [dataSize], "mtty_save_state's fill")
    assert.deepEqual(arcs(arcsMark.since([device])), [
      "RUNNING -> PRE_COPY",
      "PRE_COPY -> PRE_COPY_P2P",
      "PRE_COPY_P2P -> STOP_COPY"
    ])
    await withDevice(device, fresh)
  })

  for (const precopy of [true, false])
    await test(`migrate --local --json of three mtty devices (sources named by cdev) ${precopy ? "with" : "without"} pre-copy: downtimeMs is a number >= 0 and bytes is what the kernel moved (3 x 60: the sum of MIG_DATA_SIZE, of mtty's save reads and of its resume writes)`, async () => {
      const ids = ["uart0", "uart1", "uart2"]
      const pushed = ids.map((_, i) => [0x70 + i, precopy ? 1 : 0])
      const sizes = await Promise.all(
        sources.map((p, i) =>
          withDevice(p, (d) =>
            Effect.gen(function* () {
              yield* fresh(d)
              yield* pushFifo(d, 0, pushed[i] ?? [])
              return yield* d.stopCopyLength
            })
          )
        )
      )
      await Promise.all(destinations.map((p) => withDevice(p, fresh)))
      assert.deepEqual(sizes, [dataSize, dataSize, dataSize])
      const file = scenario(`bytes-${precopy}`, {
        devices: ids.map((id, i) => ({ id, kind: "mdev", vfio: { cdev: cdevFromSysfs(sources[i] ?? "") } })),
        destination: { devices: Object.fromEntries(ids.map((id, i) => [id, { vfio: { sysfsdev: destinations[i] } }])) },
        migration: { precopy }
      })
      const arcsMark = logMark()
      const data = dataMark()
      const started = Date.now()
      const run = await runCli("migrate", "--local", file, "--json")
      const elapsedMs = Date.now() - started
      assert.equal(run.exitCode, 0, run.stdout + run.stderr)
      const json = JSON.parse(run.stdout) as {
        readonly ok: boolean
        readonly downtimeMs: unknown
        readonly bytes: unknown
      }
      assert.equal(json.ok, true)
      assert.equal(typeof json.downtimeMs, "number")
      const downtimeMs = json.downtimeMs as number
      assert.ok(Number.isFinite(downtimeMs) && downtimeMs >= 0, `downtimeMs ${downtimeMs}`)
      assert.ok(downtimeMs <= elapsedMs, `downtimeMs ${downtimeMs} is longer than the whole run (${elapsedMs} ms)`)
      const saved = sources.map((p) => data.since(p).saved)
      const resumed = destinations.map((p) => data.since(p).resumed)
      const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)
      assert.deepEqual(
        { bytes: json.bytes, saved, resumed },
        { bytes: sum(sizes), saved: sizes, resumed: sizes },
        "bytes against MIG_DATA_SIZE and mtty's save reads and resume writes"
      )
      assert.equal(json.bytes, ids.length * dataSize)
      const logged = arcsMark.since([...sources, ...destinations])
      assert.deepEqual(
        {
          sources: sources.map((p) => lastLogged(logged, p)),
          destinations: destinations.map((p) => lastLogged(logged, p))
        },
        { sources: ["STOP_COPY", "STOP_COPY", "STOP_COPY"], destinations: ["RUNNING", "RUNNING", "RUNNING"] }
      )
      assert.equal(
        logged.some((a) => a.to === "PRE_COPY"),
        precopy,
        arcs(logged).join(", ")
      )
      assert.deepEqual(await Promise.all(destinations.map((p) => withDevice(p, (d) => drainFifo(d, 0)))), pushed)
      await Promise.all([...sources, ...destinations].map((p) => withDevice(p, fresh)))
    })
}
