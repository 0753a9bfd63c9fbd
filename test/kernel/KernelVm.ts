/**
 * Where the kernel VM is: the folder with `run-in-vm` and `bzImage` (Linux 6.12 with VFIO,
 * iommufd and the mtty sample driver), and whether QEMU can boot it here.
 */
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { join, resolve } from "node:path"

/**
 * The folder named by $LOCKSTEP_KERNEL_VM, else `../shared/kernel-vm` beside the repository,
 * else `/work/shared/kernel-vm`; or why the VM cannot run (no folder, no qemu-system-x86_64).
 */
export const findKernelVm = (repo: string): { readonly dir: string } | { readonly skip: string } => {
  const candidates = [
    ...(process.env.LOCKSTEP_KERNEL_VM === undefined ? [] : [resolve(process.env.LOCKSTEP_KERNEL_VM)]),
    resolve(repo, "../shared/kernel-vm"),
    "/work/shared/kernel-vm"
  ]
  const dir = candidates.find((d) => existsSync(join(d, "run-in-vm")) && existsSync(join(d, "bzImage")))
  if (dir === undefined)
    return { skip: `no kernel VM folder (looked in ${candidates.join(", ")}; set LOCKSTEP_KERNEL_VM)` }
  if (spawnSync("sh", ["-c", "command -v qemu-system-x86_64"]).status !== 0)
    return { skip: "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" }
  return { dir }
}
