/**
 * The migration stream: a versioned, framed, checksummed format carrying every device's state
 * from source to destination (FORMAT.md), its strict incremental decoder, and the byte
 * transports it travels on (in memory, TCP with optional mutual TLS, files).
 *
 * @packageDocumentation
 */
export { BufferPool } from "./BufferPool.js"
export { type Crc32, type Crc32Implementation, crc32, crc32Implementation, selectCrc32 } from "./Crc32.js"
export { type Decoder, type DecoderOptions, makeDecoder } from "./Decoder.js"
export { type EncodedFrame, encodeFrame, encodePreamble } from "./Encoder.js"
export * as FileTransport from "./FileTransport.js"
export {
  ChecksumMismatch,
  ChunkAfterDeviceEnd,
  DataAfterStreamEnd,
  DeviceNotEnded,
  DeviceTotalMismatch,
  DuplicateDeviceEnd,
  FormatError,
  FormatErrorReason,
  FrameOutOfOrder,
  FrameTooLarge,
  MalformedFrame,
  type SequenceError,
  StreamTotalsMismatch,
  Truncated,
  UnknownDevice,
  UnknownFrameType,
  UnsupportedVersion,
  WrongMagic
} from "./FormatError.js"
export {
  type Chunk,
  ChunkPrefixBytes,
  type Control,
  type ControlKind,
  ControlKindCode,
  DefaultMaxChunkBytes,
  DefaultMaxFrameBytes,
  type DeviceEnd,
  DeviceKindCode,
  FormatVersion,
  type Frame,
  FrameHeaderBytes,
  type FrameType,
  FrameTypeCode,
  FrameTypeSchema,
  type Manifest,
  type ManifestDevice,
  MaxCompatBytes,
  MaxControlPayloadBytes,
  MaxDeviceIdBytes,
  MaxDevices,
  NoDevice,
  PreambleBytes,
  type StreamEnd,
  SupportedVersions
} from "./Frame.js"
export * as FrameReader from "./FrameReader.js"
export * as FrameWriter from "./FrameWriter.js"
export * as MemoryTransport from "./MemoryTransport.js"
export * as TcpTransport from "./TcpTransport.js"
export { type ByteSink, type ByteSource, type Timeouts, type Transport, withTimeouts } from "./Transport.js"
export {
  ConnectFailed,
  TlsRefused,
  TransportClosed,
  TransportError,
  TransportErrorReason,
  TransportFailed,
  type TransportOperation,
  TransportOperationSchema,
  TransportTimeout
} from "./TransportError.js"
