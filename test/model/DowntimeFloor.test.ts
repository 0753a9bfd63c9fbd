import { describe, expect, it } from "@effect/vitest"
import { downtimeFloor, drainLink, earliestTransition, type FloorDevice, serialDowntimeMs } from "./DowntimeFloor.js"

/**
 * The downtime floor against cases worked by hand from DESIGN.md (the kernel paths of section 1,
 * the P2P rule of section 2, the migration of section 3): the arithmetic is in the comments.
 */

const all = 7
/** STOP_COPY and PRE_COPY, no P2P: PRE_COPY → STOP_COPY and STOP → RUNNING are direct arcs. */
const noP2P = 5

/** 1 GB/s: a million bytes take 1 ms. */
const gbps = 1e9

const gpu = (id: string, stopCopyBytes: number): FloorDevice => ({
  id,
  flags: all,
  arcMs: {
    "PRE_COPY>PRE_COPY_P2P": 2,
    "PRE_COPY_P2P>STOP_COPY": 8,
    "RESUMING>STOP": 6,
    "STOP>RUNNING_P2P": 3,
    "RUNNING_P2P>RUNNING": 2
  },
  otherArcMs: 1,
  stopCopyBytes
})

const nic = (stopCopyBytes: number): FloorDevice => ({
  id: "nic",
  flags: all,
  arcMs: {
    "PRE_COPY>PRE_COPY_P2P": 1,
    "PRE_COPY_P2P>STOP_COPY": 4,
    "RESUMING>STOP": 3,
    "STOP>RUNNING_P2P": 2,
    "RUNNING_P2P>RUNNING": 1
  },
  otherArcMs: 1,
  stopCopyBytes
})

describe("model: the downtime floor of a group migration", () => {
  it("a GPU and a NIC writing into it, worked through every step", () => {
    const floor = downtimeFloor({
      devices: [gpu("gpu0", 10e6), nic(2e6)],
      edges: [["nic", "gpu0"]],
      bytesPerSecond: gbps
    })
    // Switchover (PRE_COPY → PRE_COPY_P2P → STOP_COPY):
    //   nic:  quiesce 0→1; nothing writes into it, so its stop-copy arc runs 1→5.
    //   gpu0: quiesce 0→2; its stop-copy arc waits for the nic to be quiesced (1): max(2, 1) = 2 → 10.
    expect(floor.readyMs).toEqual({ nic: 5, gpu0: 10 })
    // Drain at 1 GB/s: nic's 2 MB 5→7; gpu0's 10 MB 10→20.
    expect(floor.arrivedMs).toEqual({ nic: 7, gpu0: 20 })
    // Validate (RESUMING → STOP): nic 7+3 = 10, gpu0 20+6 = 26; the commit waits for both: 26.
    expect(floor.validatedMs).toBe(26)
    // Resume (STOP → RUNNING_P2P → RUNNING):
    //   gpu0: 0→3, then RUNNING (it writes into nobody) 3→5.
    //   nic:  0→2, then RUNNING waits for gpu0 out of STOP (3): 3→4.
    expect(floor.resumeMs).toBe(5)
    expect(floor.ms).toBe(31)
  })

  it("serial (QEMU-style): every arc and every device's bytes one after another", () => {
    // gpu0: 2 + 8 + 10 (bytes) + 6 + 3 + 2 = 31; nic: 1 + 4 + 2 (bytes) + 3 + 2 + 1 = 13.
    expect(
      serialDowntimeMs({ devices: [gpu("gpu0", 10e6), nic(2e6)], edges: [["nic", "gpu0"]], bytesPerSecond: gbps })
    ).toBe(44)
  })

  it("the P2P rule makes a fast device wait for its slow peer's quiesce", () => {
    const slow: FloorDevice = { ...gpu("gpu1", 0), arcMs: { "PRE_COPY>PRE_COPY_P2P": 20 }, otherArcMs: 1 }
    const fast: FloorDevice = { ...gpu("gpu0", 0), arcMs: {}, otherArcMs: 1 }
    const ready = earliestTransition(
      {
        devices: [fast, slow],
        edges: [
          ["gpu0", "gpu1"],
          ["gpu1", "gpu0"]
        ]
      },
      () => "PRE_COPY",
      "STOP_COPY",
      () => 0
    )
    // gpu0 quiesces 0→1 but may halt only once gpu1 is quiesced (20): 20→21; gpu1 likewise 20→21.
    expect(ready).toEqual({ gpu0: 21, gpu1: 21 })
  })

  it("a target without P2P: it halts after its initiator quiesces, and its initiator runs after it does", () => {
    const a: FloorDevice = {
      id: "a",
      flags: all,
      arcMs: { "PRE_COPY>PRE_COPY_P2P": 4, "STOP>RUNNING_P2P": 1, "RUNNING_P2P>RUNNING": 1 },
      otherArcMs: 1,
      stopCopyBytes: 0
    }
    const b: FloorDevice = {
      id: "b",
      flags: noP2P,
      arcMs: { "PRE_COPY>STOP_COPY": 2, "STOP>RUNNING": 7 },
      otherArcMs: 0,
      stopCopyBytes: 0
    }
    const floor = downtimeFloor({ devices: [a, b], edges: [["a", "b"]], bytesPerSecond: gbps })
    // a: quiesce 0→4, stop-copy 4→5 (nothing writes into a). b: PRE_COPY → STOP_COPY is one arc,
    // into halted, so it waits for a to be quiesced (4): 4→6.
    expect(floor.readyMs).toEqual({ a: 5, b: 6 })
    // No bytes: each arrives when ready. Validate: a 5+1 = 6, b 6+0 = 6.
    expect(floor.validatedMs).toBe(6)
    // Resume: b STOP → RUNNING 0→7 (b writes into nobody). a: STOP → RUNNING_P2P 0→1, then RUNNING
    // waits for b out of STOP (7): 7→8.
    expect(floor.resumeMs).toBe(8)
    expect(floor.ms).toBe(14)
  })

  it("the link serves the ready device with the longest validation first, and preempts", () => {
    const arrived = drainLink(
      [
        { id: "d1", readyMs: 0, bytes: 10e6, tailMs: 1 },
        { id: "d2", readyMs: 2, bytes: 5e6, tailMs: 20 },
        { id: "d3", readyMs: 30, bytes: 1e6, tailMs: 0 }
      ],
      gbps
    )
    // d1 alone 0→2 (8 ms left); d2 (tail 20 > 1) takes the link 2→7; d1 finishes 7→15; the link
    // idles until d3 is ready at 30: 30→31. Last validation: max(15+1, 7+20, 31+0) = 31, where
    // taking d1 to its end first would give d2 10→15, 15+20 = 35.
    expect(arrived).toEqual({ d1: 15, d2: 7, d3: 31 })
  })

  it("refuses a scenario whose kernel path does not exist", () => {
    const noPrecopyP2P: FloorDevice = { ...gpu("gpu0", 0), flags: 1 }
    expect(() =>
      earliestTransition(
        { devices: [noPrecopyP2P], edges: [] },
        () => "RUNNING",
        "RUNNING_P2P",
        () => 0
      )
    ).toThrow(/RUNNING → RUNNING_P2P/)
  })
})
