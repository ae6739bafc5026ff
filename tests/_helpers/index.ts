/**
 * Test peers and tools shared by the test files, one module per purpose,
 * re-exported here so a test imports from one place. Runs unchanged under
 * `bun test` and `deno test`, and under `node --test` once bundled
 * (`npm run test:node`).
 *
 * @module
 */
export * from "./env.ts";
export * from "./bytes.ts";
export * from "./wait.ts";
export * from "./peers.ts";
export * from "./tls.ts";
export * from "./program.ts";
export * from "./command.ts";
export * from "./sshd.ts";
export * from "./postgres.ts";
export * from "./nginx.ts";
export * from "./timers.ts";
export * from "./udp.ts";
