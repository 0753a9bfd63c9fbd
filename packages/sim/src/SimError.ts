import { Data } from "effect"

/** A simulated device's configuration does not decode (a bad field, an unknown fault). */
export class InvalidSimConfig extends Data.TaggedError("InvalidSimConfig")<{
  readonly device: string
  readonly reason: string
}> {
  override get message(): string {
    return `${this.device}: invalid simulated device configuration: ${this.reason}`
  }
}

/** A fabric cannot be built from these devices and edges. */
export class InvalidFabric extends Data.TaggedError("InvalidFabric")<{
  readonly reason: string
}> {
  override get message(): string {
    return `invalid DMA fabric: ${this.reason}`
  }
}
