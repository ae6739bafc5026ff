/**
 * The bytes a connection has accepted and not yet written, copied into
 * pooled blocks: the storage under {@linkcode Outbox}, which both adapters use.
 *
 * @module
 */
import { release } from "./_release.ts";

/** Size of the pooled blocks that small chunks are copied into. */
export const BLOCK_SIZE = 16 * 1024;
/** Free blocks kept for reuse, at most (1 MiB); more are left to the garbage collector. */
const POOL_LIMIT = 64;
const pool: Uint8Array[] = [];

/**
 * Bytes accepted by an asynchronous `write` and not yet written, as copies
 * (the caller may reuse its chunk once `write` returns).
 *
 * A new ArrayBuffer per chunk cost Deno's keep-alive path 15-25 % of its
 * requests/s, so chunks up to {@linkcode BLOCK_SIZE} are copied into pooled
 * blocks instead: appended to the last block while that block is not being
 * written, so small chunks queued behind a write also go out together. A
 * block returns to the pool once its bytes are written. Larger chunks get a
 * copy of their own, freed as soon as it is written.
 */
/**
 * The lists of a queue that never held anything: shared, frozen, replaced at
 * the first push. Most of Bun's connections never queue a byte (the kernel
 * takes every write), and two empty arrays per socket cost 128 bytes of heap
 * (JSC's heapStats over 200,000 queues: 220 bytes each with them, 92 without),
 * a tenth of what an idle proxied connection costs.
 */
const NONE = Object.freeze([]) as unknown as never[];

export class WriteQueue {
  #views: Uint8Array[] = NONE;
  /** The pooled block behind each view, or undefined for a copy of its own. */
  #blocks: (Uint8Array | undefined)[] = NONE;
  /** Bytes used in the last block, while it may still grow; -1 when it may not. */
  #fill = -1;
  #bytes = 0;

  /** How many bytes are queued. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Queues a copy of `chunk`. */
  push(chunk: Uint8Array): void {
    if (this.#views === NONE) {
      this.#views = [];
      this.#blocks = [];
    }
    const n = chunk.length;
    this.#bytes += n;
    if (n > BLOCK_SIZE) {
      this.#fill = -1;
      this.#views.push(chunk.slice());
      this.#blocks.push(undefined);
      return;
    }
    const last = this.#views.length - 1;
    if (this.#fill >= 0 && this.#fill + n <= BLOCK_SIZE) {
      const block = this.#blocks[last]!;
      block.set(chunk, this.#fill);
      this.#fill += n;
      // From where the view starts now: part of it may have been written.
      this.#views[last] = block.subarray(this.#views[last]!.byteOffset, this.#fill);
      return;
    }
    const block = pool.pop() ?? new Uint8Array(BLOCK_SIZE);
    block.set(chunk, 0);
    this.#views.push(block.subarray(0, n));
    this.#blocks.push(block);
    this.#fill = n;
  }

  /** The bytes to write next; they no longer grow once handed out. */
  head(): Uint8Array | undefined {
    if (this.#views.length === 1) this.#fill = -1;
    return this.#views[0];
  }

  /** Drops the first `n` bytes of {@linkcode WriteQueue.head}, which were written. */
  written(n: number): void {
    this.#bytes -= n;
    const head = this.#views[0]!;
    if (n < head.length) {
      this.#views[0] = head.subarray(n);
      return;
    }
    this.#views.shift();
    const block = this.#blocks.shift();
    if (block === undefined) release(head, true);
    else if (pool.length < POOL_LIMIT) pool.push(block);
  }

  /**
   * Forgets everything queued. The blocks are not pooled again: a write the
   * runtime still has in flight may be reading one.
   */
  clear(): void {
    this.#views = NONE;
    this.#blocks = NONE;
    this.#fill = -1;
    this.#bytes = 0;
  }
}
