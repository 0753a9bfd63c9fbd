/**
 * The VFIO migration v2 state machine of one device, exact to the kernel's behaviour.
 *
 * @packageDocumentation
 */
export { type Arc, arcsFor, isArc, supportsState } from "./Arc.js"
export {
  AllFlagSets,
  AllFlags,
  type Flag,
  FlagBit,
  FlagNames,
  type Flags,
  FlagsSchema,
  flagNames,
  flagsOf,
  hasFlag
} from "./Flags.js"
export {
  BlockedTransition,
  ErrorRequested,
  FromError,
  FsmError,
  FsmErrorReason,
  MissingStopCopy,
  UnsupportedState
} from "./FsmError.js"
export {
  isSaving,
  type State,
  type StateClass,
  StateNumber,
  StateSchema,
  StateShortNames,
  States,
  stateClass,
  stateOfNumber
} from "./State.js"
export { nextState, type Path, path } from "./Transition.js"
