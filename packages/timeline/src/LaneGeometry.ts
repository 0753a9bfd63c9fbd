/**
 * Where things go on the lanes, as the renderers of the lanes' elements need it: the time
 * scale and each device's lane and bar. One value, part of the `TimelineLayout` built once per picture.
 */
export interface LaneGeometry {
  /** The x of a time. */
  readonly x: (at: number) => number
  /** The top of a device's lane. */
  readonly laneTop: (device: string) => number
  readonly laneHeight: number
  /** Space between the lane's edge and its bars, above and below. */
  readonly barPad: number
  readonly barHeight: number
  /** The font size of lane text. */
  readonly laneFont: number
}
