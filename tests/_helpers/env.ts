/**
 * Where the tests run: the runtime's own {@linkcode Net}, the project's root,
 * the commands on PATH, and temporary folders.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import process from "node:process";
import { currentNet } from "../../src/runtime/current.ts";
import type { Net } from "../../src/runtime/types.ts";

export const net: Net = await currentNet();

/** The project's root folder. */
export const ROOT = new URL("../..", import.meta.url).pathname;

/**
 * Where a command is: the first folder of PATH that has it, then `/usr/sbin`
 * and `/sbin` (Debian puts daemons such as haproxy there, and a user's PATH
 * often lacks them).
 *
 * @param name the command's file name
 * @returns its path, or undefined when it is not installed
 */
export function findCommand(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    const path = join(dir, name);
    if (dir && existsSync(path)) return path;
  }
  return undefined;
}

/** A temporary folder removed by `cleanup`. */
export async function tempDir() {
  const path = await mkdtemp(join(tmpdir(), "mini-balancer-test-"));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}
