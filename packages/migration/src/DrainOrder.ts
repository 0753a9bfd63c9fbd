/**
 * Earliest-ready-first dispatch of the drain. Devices become ready (reach STOP_COPY) at
 * different times; at most `limit` of them drain at once, and a free slot always goes to the
 * device that has been ready longest.
 *
 * With one channel this schedule is optimal whatever the limit: the channel is never idle while
 * a ready device waits, so the last byte leaves at the latest, over devices d, of d's ready time
 * plus the transfer time of every device ready no earlier than d, which no schedule can beat.
 * Taking devices in group order instead holds a slot for a device that is not ready yet while
 * ready ones wait.
 */
export class ReadyOrder {
  private readonly waiting: Array<number> = []
  private running = 0

  /**
   * @param limit at most this many drains at once (at least one).
   * @param start called, synchronously, when a device gets its slot.
   */
  constructor(
    private readonly limit: number,
    private readonly start: (device: number) => void
  ) {}

  /** `device` is ready to drain: it starts now if a slot is free, else after those ready before it. */
  ready(device: number): void {
    this.waiting.push(device)
    this.dispatch()
  }

  /** A started drain has ended (drained, failed or stopped): its slot goes to the next ready device. */
  finished(): void {
    this.running = Math.max(0, this.running - 1)
    this.dispatch()
  }

  /** Drains started and not finished. */
  get active(): number {
    return this.running
  }

  private dispatch(): void {
    while (this.running < Math.max(1, this.limit)) {
      const next = this.waiting.shift()
      if (next === undefined) return
      this.running += 1
      this.start(next)
    }
  }
}
