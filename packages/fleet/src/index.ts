/**
 * Evacuating hosts: many VMs, each a group of P2P devices, migrated under the hosts' NIC
 * budgets as durable workflows (`effect/workflow` on `effect/cluster`), embedded on SQLite by
 * default and spread over runners sharing Postgres to scale out.
 *
 * @packageDocumentation
 */
export * as Engine from "./Engine.js"
export { EvacuateHost, type EvacuateHostPayload, type EvacuationReport, type VmOutcome } from "./EvacuateHost.js"
export {
  checkSourcesRun,
  hostToEvacuate,
  maxAttempts,
  type PlannedEvacuation,
  plan,
  run,
  type StartedEvacuation,
  shown,
  startOrResume,
  vmKeys
} from "./Evacuation.js"
export {
  entriesOf,
  type FencedEntry,
  historyOf,
  JournalDatabase,
  type LoggedChange,
  takeEpoch
} from "./FencedJournal.js"
export {
  DevicesUnreachable,
  FleetError,
  FleetErrorReason,
  FleetProblem,
  HostUnreachable,
  InvalidFleet,
  NoCapacity,
  ReservationRefused,
  Unfit,
  VmNotMigrated
} from "./FleetError.js"
export {
  type Backend,
  decodeFleet,
  defaultSimulation,
  type Fleet,
  FleetDocument,
  type FleetHost,
  type FleetVm,
  loadFleetFile,
  MigrationSettings
} from "./FleetFile.js"
export * as FleetStore from "./FleetStore.js"
export { HostAgent } from "./HostAgent.js"
export * as HostControl from "./HostControl.js"
export { MigrateVm, type MigrateVmPayload, type VmMigrated } from "./MigrateVm.js"
export * as NicBudget from "./NicBudget.js"
export { type Placement, place } from "./Placement.js"
export * as Report from "./Report.js"
export * as Runner from "./Runner.js"
export {
  costOf,
  type EvacuationSchedule,
  orchestrationAllowanceMs,
  type ScheduledVm,
  schedule,
  type VmCost
} from "./Schedule.js"
export { type SimulatedHostHandle, serveHost, simulatedHosts } from "./SimulatedHost.js"
export * as SqliteClient from "./SqliteClient.js"
export * as StateDirectory from "./StateDirectory.js"
export { TransferOutcome, TransferRequest, transfer, vmKeyOf } from "./Switchover.js"
