/**
 * A module the soak preloads into a proxy under `deno run` or `bun run`
 * (`--preload bench/memory_log.ts`): every 5 s it writes one line to
 * standard error, `bench-memory {"rss":…,"heapTotal":…,"heapUsed":…,"external":…}`
 * in bytes, from the runtime's own memory figures (`Deno.memoryUsage()`,
 * Bun's `process.memoryUsage()`). Set beside the RSS, they say whether
 * memory grows in the JavaScript heap, in buffers outside it, or in neither
 * (native memory: the runtime's Rust or Zig side, V8's own, the allocator).
 *
 * It reads one heap statistic and writes one line per 5 s, and imports
 * nothing, so that it loads no Node compatibility layer into a proxy that
 * does not use one (the minimal Deno proxy). It exports nothing either:
 * importing it starts the timer. The soak (bench/soak.ts) reads the lines.
 *
 * @module
 */

/** The figures both runtimes give, in bytes. */
interface MemoryUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
}

// Bun's global; the Deno branch does not touch it.
declare const process: { memoryUsage(): MemoryUsage };

const timer = setInterval(() => {
  const { rss, heapTotal, heapUsed, external } = typeof Deno === "undefined"
    ? process.memoryUsage()
    : Deno.memoryUsage();
  console.error(`bench-memory ${JSON.stringify({ rss, heapTotal, heapUsed, external })}`);
}, 5000);
// The proxy must not stay up for this timer's sake.
if (typeof Deno === "undefined") (timer as unknown as { unref(): void }).unref();
else Deno.unrefTimer(timer);
