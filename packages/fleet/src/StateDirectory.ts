import { dirname, join, resolve } from "node:path"
import type { Fleet, FleetVm } from "./FleetFile.js"
import { controlPath, socketPath } from "./HostControl.js"

/**
 * Where an embedded fleet keeps its files: one directory (`--state`, default `.lockstep-fleet`)
 * holding the SQLite databases of the workflows (`fleet.sqlite`) and of the commit journal
 * (`journal.sqlite`) and, under `s/HOST/`, each
 * simulated host's control socket and device sockets (short paths: a UNIX socket path is at
 * most 107 bytes).
 */

/** The default state directory, relative to the working directory. */
export const defaultStateDirectory = ".lockstep-fleet"

/** The workflow database of an embedded fleet. */
export const databasePath = (state: string): string => join(resolve(state), "fleet.sqlite")

/** The commit journal of an embedded fleet (see `FencedJournal`). */
export const journalPath = (state: string): string => join(resolve(state), "journal.sqlite")

/** Where a host's files are: beside its `control` socket if the fleet file gives one, else under the state directory. */
export const hostDirectory = (fleet: Fleet, state: string, host: string): string => {
  const control = fleet.hosts.find((h) => h.name === host)?.control
  return control === undefined ? join(resolve(state), "s", host) : dirname(resolve(control))
}

/** The control socket of a host. */
export const controlSocket = (fleet: Fleet, state: string, host: string): string => {
  const control = fleet.hosts.find((h) => h.name === host)?.control
  return control === undefined ? controlPath(hostDirectory(fleet, state, host)) : resolve(control)
}

/**
 * The vfio-user socket template of a VM's devices on a host (`{device}` stands for the id):
 * the fleet file's for a vfio-user VM, the host's own for a simulated one.
 */
export const deviceSocketTemplate = (fleet: Fleet, state: string, vm: FleetVm, host: string): string =>
  vm.backend === "vfio-user"
    ? resolve(vm.sockets[host] ?? "")
    : socketPath(hostDirectory(fleet, state, host), vm.name, "{device}")

/** A socket template with a device id filled in. */
export const deviceSocket = (template: string, device: string): string => template.split("{device}").join(device)

/** Longest UNIX socket path (sun_path is 108 bytes with its NUL). */
export const maxSocketPathBytes = 107
