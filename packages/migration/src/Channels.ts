/*
 * The rule of a migration over several channels (QEMU's multifd), written once for both sides:
 * device i (manifest index) travels on channel i mod N. Channel 0 is the session's transport:
 * its manifest is the handshake's offer (every device), so the devices it does not carry are
 * closed there with empty end markers; an extra channel's manifest names the devices it carries,
 * in group order, so device i is index ⌊i / N⌋ of channel (i mod N).
 */

/** The channel device `i` travels on, of `channels`. */
export const channelOf = (i: number, channels: number): number => i % channels

/** The manifest indices of the devices channel `channel` carries, of `count` devices, in group order. */
export const carriedBy = (channel: number, channels: number, count: number): ReadonlyArray<number> =>
  Array.from({ length: count }, (_, i) => i).filter((i) => channelOf(i, channels) === channel)

/** Device `i`'s index in its channel's manifest: its own on channel 0 (whose manifest names every device). */
export const indexOnChannel = (i: number, channels: number): number =>
  channelOf(i, channels) === 0 ? i : Math.floor(i / channels)

/**
 * The device (manifest index) at `index` of channel `channel`'s manifest, the inverse of
 * {@link indexOnChannel}; undefined for a device channel 0 names but does not carry.
 */
export const deviceOnChannel = (index: number, channel: number, channels: number): number | undefined => {
  if (channel > 0) return channel + index * channels
  return channelOf(index, channels) === 0 ? index : undefined
}
