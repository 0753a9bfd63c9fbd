import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { runCli } from "./runCli.js"

/*
 * The kernel-device commands on a machine without VFIO (this one, and CI's): every way they
 * cannot run is a sentence naming what is missing, with its exit code. Driving real kernel
 * devices is the kernel suite's (test/kernel, in a VM).
 */

const dir = mkdtempSync(join(tmpdir(), "lockstep-cli-vfio-"))
const write = (name: string, doc: unknown): string => {
  const path = join(dir, name)
  writeFileSync(path, JSON.stringify(doc))
  return path
}
const noCdevs = !existsSync("/dev/vfio/devices")

describe("lockstep vfio", () => {
  it("info names a sysfs path that is no device (exit 1)", async () => {
    const run = await runCli("vfio", "info", "--sysfsdev", "/sys/bus/mdev/devices/none")
    expect(run.exitCode).toBe(1)
    expect(run.stderr).toBe(
      "lockstep: cannot open kernel device /sys/bus/mdev/devices/none: /sys/bus/mdev/devices/none does not exist: no such device in sysfs\n"
    )
  })

  it.runIf(noCdevs)("info says why there is no VFIO here (exit 1)", async () => {
    const run = await runCli("vfio", "info", "--cdev", "/dev/vfio/devices/vfio0", "--json")
    expect(run.exitCode).toBe(1)
    expect(run.stderr).toContain("this kernel has no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV)")
  })

  it("asks for exactly one of --sysfsdev and --cdev (exit 2)", async () => {
    const run = await runCli("vfio", "reset")
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain("give exactly one of --sysfsdev PATH and --cdev /dev/vfio/devices/vfioN")
  })
})

describe("lockstep migrate with kernel devices", () => {
  const kernel = (id: string, n: number) => ({ id, kind: "pci", vfio: { sysfsdev: `/sys/bus/mdev/devices/none-${n}` } })

  it("a kernel device needs its own destination device (exit 2)", async () => {
    const file = write("no-destination.json", { devices: [kernel("gpu0", 0)] })
    const run = await runCli("migrate", "--local", file)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain(
      "destination.devices.gpu0: missing; a kernel device migrates into another kernel device"
    )
  })

  it("a side may not mix kernel and simulated devices (exit 2)", async () => {
    const file = write("mixed.json", {
      devices: [kernel("gpu0", 0), { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P"] }],
      destination: { devices: { gpu0: { vfio: { sysfsdev: "/sys/bus/mdev/devices/none-1" } } } }
    })
    const run = await runCli("migrate", "--local", file)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain("mixing kernel and simulated devices is not supported")
  })

  it("a device that cannot be opened fails before anything moves, naming it (exit 1)", async () => {
    const file = write("absent.json", {
      devices: [kernel("gpu0", 0)],
      destination: { devices: { gpu0: { vfio: { sysfsdev: "/sys/bus/mdev/devices/none-1" } } } }
    })
    const run = await runCli("migrate", "--local", file, "--json")
    expect(run.exitCode).toBe(1)
    expect(run.stderr).toContain(
      "cannot open kernel device gpu0 (/sys/bus/mdev/devices/none-0): /sys/bus/mdev/devices/none-0 does not exist"
    )
  })

  it("a malformed vfio key is invalid input (exit 2)", async () => {
    const file = write("bad-key.json", {
      devices: [{ id: "gpu0", kind: "pci", vfio: { sysfsdev: "/a", cdev: "/b" } }],
      destination: { devices: { gpu0: { vfio: { cdev: "/c" } } } }
    })
    const run = await runCli("migrate", "--local", file)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain('devices[0].vfio: give exactly one of "sysfsdev" and "cdev"')
  })

  it("--local runs both sides of a simulated scenario in this process, on real time, and draws it", async () => {
    const file = write("sim.json", {
      devices: [
        {
          id: "gpu0",
          kind: "pci",
          flags: ["STOP_COPY", "P2P", "PRE_COPY"],
          sim: { stateSize: 65536, arcLatencyMs: 1 }
        },
        { id: "gpu1", kind: "pci", flags: ["STOP_COPY", "P2P"], sim: { stateSize: 32768, arcLatencyMs: 1 } }
      ]
    })
    const svg = join(dir, "sim.svg")
    const run = await runCli("migrate", "--local", file, "--json", "--timeline", svg)
    expect(run.exitCode).toBe(0)
    expect(readFileSync(svg, "utf8")).toMatch(/<svg[^>]*>[\s\S]*src gpu0[\s\S]*dst gpu0[\s\S]*<\/svg>\s*$/)
    const json = JSON.parse(run.stdout)
    expect(json).toMatchObject({
      ok: true,
      violations: 0,
      final: { source: { gpu0: "STOP_COPY", gpu1: "STOP_COPY" }, destination: { gpu0: "RUNNING", gpu1: "RUNNING" } }
    })
  })

  it("--local goes alone: not with --listen (exit 2)", async () => {
    const file = write("alone.json", { devices: [{ id: "gpu0", kind: "pci", flags: ["STOP_COPY"] }] })
    const run = await runCli("migrate", "--local", "--listen", "0", file)
    expect(run.exitCode).toBe(2)
    expect(run.stderr).toContain("give exactly one of --local")
  })
})
