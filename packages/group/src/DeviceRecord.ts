/**
 * Records keyed by device id, filled key by key, started in V8's dictionary mode: a plain
 * object grows a hidden class per new key, which for a group of 1000s of devices costs more
 * than everything else the executor does per device (issue 17: `Object.fromEntries` of 1024
 * ids was a fifth of the bytes allocated per arc). Deleting a property that was not the last
 * one added is what switches an object to dictionary mode; the object is otherwise plain.
 */
export const emptyDeviceRecord = <V>(): Record<string, V> => {
  const record: Record<string, V> = {}
  Object.assign(record, { dictionary: 0, mode: 0 })
  delete record.dictionary
  delete record.mode
  return record
}

/** Sets `record[id]` as an own property, as `Object.fromEntries` does, also for an id `__proto__`. */
export const putDevice = <V>(record: Record<string, V>, id: string, value: V): void => {
  if (id === "__proto__")
    Object.defineProperty(record, id, { value, writable: true, enumerable: true, configurable: true })
  else record[id] = value
}

/**
 * `record[id]` if `id` is the record's own key: a plain object answers `constructor`,
 * `toString` or `__proto__` from its prototype otherwise, and those are valid device ids.
 */
export const deviceEntry = <V>(record: Readonly<Record<string, V>>, id: string): V | undefined =>
  Object.hasOwn(record, id) ? record[id] : undefined

/** `Object.fromEntries` for records keyed by device id (see `emptyDeviceRecord`). */
export const deviceRecord = <V>(entries: Iterable<readonly [string, V]>): Record<string, V> => {
  const record = emptyDeviceRecord<V>()
  for (const [id, value] of entries) putDevice(record, id, value)
  return record
}
