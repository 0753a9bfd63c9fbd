/**
 * The kernel backend's benchmark, from the host: `npm run bench:kernel` (Node 24 runs this file
 * as is). Compiles the C loop and the N-API comparison addon with the machine's gcc, boots the
 * kernel VM once with one mtty device, and runs KernelBench.ts inside it, so that every figure
 * and its C floor come from the same boot. Skipped, saying why, without the VM or QEMU.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { findKernelVm } from "../../test/kernel/KernelVm.ts"

const repo = fileURLToPath(new URL("../..", import.meta.url))

const gcc = (args: ReadonlyArray<string>) => {
  const cc = spawnSync("gcc", args, { stdio: "inherit" })
  if (cc.status !== 0) {
    console.log(`bench:kernel: gcc ${args.join(" ")} failed`)
    process.exit(1)
  }
}

const found = findKernelVm(repo)
if ("skip" in found) {
  console.log(`kernel bench skipped: ${found.skip}`)
  process.exit(0)
}
const work = mkdtempSync(join(tmpdir(), "lockstep-kernel-bench-"))
const loop = join(work, "loop")
const addon = join(work, "napi_ioctl.node")
gcc(["-O2", "-Wall", "-o", loop, join(repo, "bench/kernel/loop.c")])
// The addon needs only Node-API's headers, which koffi's package carries.
const napiHeaders = join(repo, "node_modules/koffi/vendor/node-api-headers/include")
gcc(["-O2", "-Wall", "-shared", "-fPIC", `-I${napiHeaders}`, "-o", addon, join(repo, "bench/kernel/napi_ioctl.c")])
const vm = spawn(
  join(found.dir, "run-in-vm"),
  ["-n", "1", "-t", "mtty-1", "-C", repo, "--", process.execPath, "bench/kernel/KernelBench.ts", loop, addon],
  { stdio: "inherit" }
)
vm.on("exit", (code) => process.exit(code ?? 1))
