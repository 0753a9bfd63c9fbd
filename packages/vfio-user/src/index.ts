/**
 * vfio-user over a UNIX socket: the message codec, a client that drives a remote device
 * through the `Device` port, and a server that exposes any `Device` to vfio-user clients.
 *
 * @packageDocumentation
 */
export {
  type ClientOptions,
  connect,
  type DeviceInfo,
  type IrqInfo,
  type RegionInfo,
  type ServerInfo,
  type VfioUserDevice
} from "./Client.js"
export {
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  FrameDecoder,
  FrameHeadroom,
  type Frames,
  type Limits,
  limitsFor,
  matchReply
} from "./Codec.js"
export {
  ConnectionLost,
  describeRequestError,
  ReplyTimeout,
  type RequestError,
  ServerError,
  VfioUserConnectFailed
} from "./Connection.js"
export { codeOfErrno, errnoOfCode, errnoOfDeviceError } from "./Errno.js"
export {
  type Capabilities,
  Command,
  type CommandName,
  commandLabel,
  commandOf,
  commandOfNumber,
  DefaultMaxDataXferSize,
  DeviceInfoFlag,
  type ErrorReply,
  expectationOf,
  Feature,
  FeatureOp,
  type Frame,
  type Header,
  HeaderFlag,
  HeaderSize,
  IrqInfoSize,
  isReplyTo,
  MaxMessageSize,
  NoDataFd,
  type Operation,
  ProtocolVersion,
  RegionInfoFlag,
  RegionInfoSize,
  type Reply,
  type ReplyOf,
  type Request,
  requestLabel
} from "./Message.js"
export { PciConfigSize, PciIdentity, pciConfigSpace } from "./PciConfig.js"
export * from "./ProtocolError.js"
export { ListenFailed, type ServerOptions, serve, type VfioUserServer } from "./Server.js"
export {
  type AttachedGroup,
  attachVfioUserDevices,
  openVfioUserGroup,
  VfioUserDeviceInvalid,
  VfioUserGroup
} from "./VfioUserGroup.js"
