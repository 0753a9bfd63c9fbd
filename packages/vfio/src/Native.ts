import { createRequire } from "node:module"
import { Result } from "effect"

/**
 * The whole native surface of the kernel backend: seven libc calls. Each answers the call's
 * result, or `-errno` when it failed (the kernel's own convention), so a caller never has to
 * read errno separately and nothing is allocated per call.
 *
 * Buffers are passed as they are (no copy): an ioctl's argument is read and written in place.
 */
export interface Native {
  /** `open(path, flags)`: a file descriptor. */
  readonly open: (path: string, flags: number) => number
  /** `ioctl(fd, request, arg)` with `arg` a buffer, or a null argument. */
  readonly ioctl: (fd: number, request: number, arg: Uint8Array | undefined) => number
  /** `read(fd, buf, count)`: bytes read. */
  readonly read: (fd: number, buf: Uint8Array, count: number) => number
  /** `write(fd, buf, count)`: bytes written. */
  readonly write: (fd: number, buf: Uint8Array, count: number) => number
  /** `pread(fd, buf, count, offset)`. */
  readonly pread: (fd: number, buf: Uint8Array, count: number, offset: bigint) => number
  /** `pwrite(fd, buf, count, offset)`. */
  readonly pwrite: (fd: number, buf: Uint8Array, count: number, offset: bigint) => number
  /** `close(fd)`. */
  readonly close: (fd: number) => number
}

/** `open(2)` flags on Linux (every architecture Lockstep runs on): `O_RDWR | O_CLOEXEC`. */
export const OpenReadWrite = 0o2 | 0o2000000

/** The part of koffi this module uses, typed at the boundary (koffi's own types answer `any`). */
interface KoffiModule {
  readonly load: (path: null) => { readonly func: (definition: string) => (...args: ReadonlyArray<unknown>) => unknown }
  readonly errno: () => number
}

const isKoffi = (u: unknown): u is KoffiModule =>
  typeof u === "object" &&
  u !== null &&
  "load" in u &&
  typeof u.load === "function" &&
  "errno" in u &&
  typeof u.errno === "function"

/**
 * Binds the libc calls through koffi, an FFI whose prebuilt binaries come inside its npm
 * packages (no compiler at install time).
 *
 * `ioctl` is variadic in C, but is declared here with its one pointer argument fixed: koffi
 * parses a variadic call's argument types on every call, which costs several times the call
 * itself under the kernel VM's TCG (bench/kernel), and arcs are the hot path. Calling it so is
 * sound on the 64-bit Linux ABIs: integer and pointer arguments go in the same registers either
 * way, and the x86-64 count in %al only bounds which vector registers a variadic callee saves.
 */
const bind = (koffi: KoffiModule): Native => {
  const libc = koffi.load(null)
  const open = libc.func("int open(const char *path, int flags, ...)")
  const ioctl = libc.func("int ioctl(int fd, unsigned long request, void *arg)")
  const read = libc.func("long read(int fd, void *buf, unsigned long count)")
  const write = libc.func("long write(int fd, const void *buf, unsigned long count)")
  const pread = libc.func("long pread(int fd, void *buf, unsigned long count, int64_t offset)")
  const pwrite = libc.func("long pwrite(int fd, const void *buf, unsigned long count, int64_t offset)")
  const close = libc.func("int close(int fd)")
  const result = (r: unknown): number => {
    const n = Number(r)
    return n < 0 ? -koffi.errno() : n
  }
  return {
    open: (path, flags) => result(open(path, flags)),
    ioctl: (fd, request, arg) => result(ioctl(fd, request, arg ?? null)),
    read: (fd, buf, count) => result(read(fd, buf, count)),
    write: (fd, buf, count) => result(write(fd, buf, count)),
    pread: (fd, buf, count, offset) => result(pread(fd, buf, count, offset)),
    pwrite: (fd, buf, count, offset) => result(pwrite(fd, buf, count, offset)),
    close: (fd) => result(close(fd))
  }
}

let loaded: Result.Result<Native, string> | undefined

/**
 * The native calls, loaded on first use; or why they cannot be had here (not Linux, or the FFI
 * could not load). The package itself always loads: only opening a kernel device needs this.
 */
export const nativeAccess = (): Result.Result<Native, string> => {
  if (loaded !== undefined) return loaded
  if (process.platform !== "linux") {
    loaded = Result.fail(`VFIO devices exist only on Linux, and this is ${process.platform}`)
    return loaded
  }
  try {
    const koffi: unknown = createRequire(import.meta.url)("koffi")
    loaded = isKoffi(koffi)
      ? Result.succeed(bind(koffi))
      : Result.fail("the koffi FFI package loaded without its load/errno functions")
  } catch (cause) {
    loaded = Result.fail(
      `the koffi FFI package could not be loaded (${cause instanceof Error ? cause.message.split("\n")[0] : String(cause)}); reinstall with npm install`
    )
  }
  return loaded
}
