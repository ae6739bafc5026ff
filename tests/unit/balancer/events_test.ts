/**
 * The events seam as a unit: subscribers that implement only some events,
 * combined into one complete sink.
 *
 * @module
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  combineEvents,
  type Events,
  type FrontendInfo,
  NO_EVENTS,
} from "../../../src/balancer/events.ts";

const FRONTEND: FrontendInfo = { name: "web", localAddress: "127.0.0.1:1" };
const NAMES = [
  "listening",
  "accepted",
  "queued",
  "refused",
  "acceptFailed",
  "chosen",
  "connected",
  "connectFailed",
  "closed",
  "pipe",
  "probed",
  "backendDown",
  "backendUp",
  "agentChanged",
  "resolved",
] as const;

describe("combineEvents", () => {
  it("fills every event a subscriber leaves out", () => {
    const seen: string[] = [];
    const events = combineEvents({ refused: (_f, peer, why) => void seen.push(`${peer} ${why}`) });
    for (const name of NAMES) assert.equal(typeof events[name], "function", name);
    assert.equal(events.tracePipe, false);
    events.listening(FRONTEND);
    events.refused(FRONTEND, "10.0.0.1:5", "denied", "");
    assert.deepEqual(seen, ["10.0.0.1:5 denied"]);
  });

  it("tells each subscriber that hears an event, in order, with its own this", () => {
    const seen: string[] = [];
    class Counter implements Partial<Events> {
      readonly tracePipe = true;
      #count = 0;
      acceptFailed(): void {
        seen.push(`counter ${++this.#count}`);
      }
    }
    const events = combineEvents(
      { acceptFailed: (_f, reason) => void seen.push(`first ${reason}`) },
      NO_EVENTS,
      new Counter(),
    );
    events.acceptFailed(FRONTEND, "x");
    events.acceptFailed(FRONTEND, "y");
    assert.deepEqual(seen, ["first x", "counter 1", "first y", "counter 2"]);
    assert.equal(events.tracePipe, true);
  });

  it("closes every subscriber that can be closed", () => {
    let closed = 0;
    combineEvents({ close: () => closed++ }, {}, { close: () => closed++ }).close?.();
    assert.equal(closed, 2);
  });

  it("hands back a lone complete subscriber as it is", () => {
    const events: Events = { ...NO_EVENTS, resolved: () => {} };
    assert.equal(combineEvents(events), events);
    assert.notEqual(combineEvents({ resolved: () => {} }), NO_EVENTS);
  });
});
