/**
 * The write side both adapters share: the queue of copies in pooled blocks
 * ({@linkcode WriteQueue}) and the end or close that follows it ({@linkcode Outbox}).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CLOSE, END, NOTHING, Outbox } from "../../../src/runtime/_outbox.ts";
import { BLOCK_SIZE, WriteQueue } from "../../../src/runtime/_write_queue.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

/** Takes everything out of the queue as the writer would, whole heads at a time. */
function drain(queue: WriteQueue): number[][] {
  const writes: number[][] = [];
  for (let head = queue.head(); head !== undefined; head = queue.head()) {
    writes.push([...head]);
    queue.written(head.length);
  }
  return writes;
}

describe("WriteQueue", () => {
  it("keeps its own copy: the caller may reuse its chunk at once", () => {
    const queue = new WriteQueue();
    const chunk = bytes(1, 2, 3);
    queue.push(chunk);
    chunk.fill(9);
    assert.deepEqual(drain(queue), [[1, 2, 3]]);
  });

  it("sends small chunks queued together as one write", () => {
    const queue = new WriteQueue();
    queue.push(bytes(1));
    queue.push(bytes(2, 3));
    queue.push(bytes(4));
    assert.deepEqual(drain(queue), [[1, 2, 3, 4]]);
  });

  it("never grows the bytes a write is already sending", () => {
    const queue = new WriteQueue();
    queue.push(bytes(1, 2));
    const inFlight = queue.head()!;
    queue.push(bytes(3));
    assert.deepEqual([...inFlight], [1, 2]);
    queue.written(inFlight.length);
    assert.deepEqual(drain(queue), [[3]]);
  });

  it("resumes a partly written head where the system stopped", () => {
    const queue = new WriteQueue();
    queue.push(bytes(1, 2, 3, 4));
    queue.written(3);
    queue.push(bytes(5));
    assert.deepEqual(drain(queue), [[4, 5]]);
    assert.equal(queue.bytes, 0);
  });

  it("starts a new block when the last one is full, in order", () => {
    const queue = new WriteQueue();
    const big = new Uint8Array(BLOCK_SIZE - 1).fill(7);
    queue.push(big);
    queue.push(bytes(1, 2));
    const writes = drain(queue);
    assert.deepEqual(writes.map((w) => w.length), [BLOCK_SIZE - 1, 2]);
    assert.deepEqual(writes[1], [1, 2]);
  });

  it("gives a chunk larger than a block a copy of its own", () => {
    const queue = new WriteQueue();
    const large = new Uint8Array(BLOCK_SIZE + 10).map((_, i) => i % 251);
    queue.push(bytes(1));
    queue.push(large);
    queue.push(bytes(2));
    const writes = drain(queue);
    assert.deepEqual(writes.map((w) => w.length), [1, BLOCK_SIZE + 10, 1]);
    assert.deepEqual(writes[1], [...large]);
  });

  it("reuses written blocks without mixing up their bytes", () => {
    const queue = new WriteQueue();
    for (let round = 0; round < 5; round++) {
      queue.push(bytes(round, round + 1));
      assert.deepEqual(drain(queue), [[round, round + 1]]);
    }
  });

  it("forgets everything on clear", () => {
    const queue = new WriteQueue();
    queue.push(bytes(1));
    queue.clear();
    assert.equal(queue.bytes, 0);
    assert.equal(queue.head(), undefined);
  });
});

describe("Outbox", () => {
  it("counts the bytes queued until they are written", () => {
    const out = new Outbox();
    out.push(bytes(1, 2, 3));
    out.push(new Uint8Array(BLOCK_SIZE + 1));
    assert.equal(out.bytes, BLOCK_SIZE + 4);
    out.written(2);
    assert.equal(out.bytes, BLOCK_SIZE + 2);
    drain(out);
    assert.equal(out.bytes, 0);
  });

  it("stops taking bytes at end() and has the FIN due once", () => {
    const out = new Outbox();
    assert.equal(out.accepting, true);
    assert.equal(out.end(), true);
    assert.equal(out.accepting, false);
    assert.equal(out.end(), false, "a second end() asks nothing");
    assert.equal(out.takeDue(), END);
    assert.equal(out.takeDue(), NOTHING);
  });

  it("lets close() follow end(), replacing a FIN still due", () => {
    const out = new Outbox();
    out.end();
    assert.equal(out.close(), true);
    assert.equal(out.due, CLOSE);
    assert.equal(out.close(), false);
    assert.equal(out.end(), false);
    assert.equal(out.takeDue(), CLOSE);
  });

  it("forgets its bytes and what was due on clear, and takes nothing more", () => {
    const out = new Outbox();
    out.push(bytes(1));
    out.end();
    out.clear();
    assert.equal(out.bytes, 0);
    assert.equal(out.due, NOTHING);
    assert.equal(out.accepting, false);
    assert.equal(out.end(), false);
    assert.equal(out.close(), false);
  });
});
