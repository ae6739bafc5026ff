/**
 * Picks the {@linkcode Net} adapter of the runtime this code runs on. The
 * entry files name their adapter statically; this is for tests and examples
 * that run unchanged under Bun, Deno and Node (bundled: Node 20 runs no
 * TypeScript).
 *
 * @module
 */
import process from "node:process";
import type { Net } from "./types.ts";

/**
 * Returns the adapter for the current runtime.
 *
 * @throws {Error} on a runtime without an adapter
 */
export async function currentNet(): Promise<Net> {
  if ("Bun" in globalThis) return (await import("./bun/index.ts")).bunNet;
  if ("Deno" in globalThis) return (await import("./deno/index.ts")).denoNet;
  // Bun and Deno set process.versions.node too: they are recognised first.
  if (process.versions.node !== undefined) {
    return (await import("./node/index.ts")).nodeNet;
  }
  throw new Error("mini-balancer runs on Bun, Deno or Node: no adapter for this runtime");
}
