/**
 * The kernel suite, from the host: `npm run test:kernel` (Node 24 runs this file as is).
 *
 * It boots the kernel VM of `shared/kernel-vm` (Linux 6.12 with VFIO, iommufd and the mtty
 * sample driver) once, with 15 mtty-1 devices, and runs `suite.ts` inside it as one Node process
 * (loading Node and Effect costs 15-20 s per process under TCG, so everything is batched).
 * The VM folder is found by $LOCKSTEP_KERNEL_VM, else `../shared/kernel-vm` beside the
 * repository, else `/work/shared/kernel-vm`. Without it or without qemu-system-x86_64 the
 * suite is skipped, saying why, and exits 0; `--require` makes that a failure.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { findKernelVm } from "./KernelVm.ts"

const repo = fileURLToPath(new URL("../..", import.meta.url))
const required = process.argv.includes("--require")

const main = () => {
  const found = findKernelVm(repo)
  if ("skip" in found) {
    console.log(`kernel suite skipped: ${found.skip}`)
    process.exit(required ? 1 : 0)
  }
  const work = mkdtempSync(join(tmpdir(), "lockstep-kernel-"))
  const holder = join(work, "holder")
  const cc = spawnSync("gcc", ["-O2", "-Wall", "-o", holder, join(repo, "test/kernel/holder.c")], { stdio: "inherit" })
  if (cc.status !== 0) {
    console.log("kernel suite: could not compile test/kernel/holder.c with gcc")
    process.exit(1)
  }
  const started = Date.now()
  console.log(`kernel suite: booting ${join(found.dir, "run-in-vm")} with 15 mtty-1 devices`)
  const vm = spawn(
    join(found.dir, "run-in-vm"),
    [
      "-n",
      "15",
      "-t",
      "mtty-1",
      "-T",
      "1500",
      "-C",
      repo,
      "--",
      "sh",
      "-c",
      'NODE_COMPILE_CACHE="$TMPDIR/node-compile-cache" exec "$0" test/kernel/suite.ts "$1"',
      process.execPath,
      holder
    ],
    { stdio: "inherit" }
  )
  vm.on("exit", (code) => {
    console.log(`kernel suite: the VM ran for ${((Date.now() - started) / 1000).toFixed(0)} s`)
    process.exit(code ?? 1)
  })
}

main()
