import * as os from "node:os"

/** The machine a run was measured on: the figures mean nothing without it. */
export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly ramGiB: number
  readonly node: string
  readonly platform: string
}

/** Describes this machine. */
export const thisMachine = (): Machine => {
  const cpus = os.cpus()
  return {
    cpu: cpus[0]?.model.trim() ?? "unknown CPU",
    cores: cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`
  }
}

/** One line for the top of the table. */
export const describeMachine = (m: Machine): string =>
  `machine: ${m.cpu}, ${m.cores} cores, ${m.ramGiB} GiB RAM, Node ${m.node}, ${m.platform}`
