/**
 * The code before a change, checked out beside the current tree so that one
 * run measures both (`--baseline REF`): a detached git worktree of REF in a
 * temporary directory, with a `node_modules` symlink to the project's, so
 * that both resolve the same dependency versions. Only the proxy under test
 * comes from REF; the harness is always the current tree's.
 *
 * Everything here is synchronous so that the `exit` handler can remove the
 * worktree too.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, symlinkSync, unlinkSync } from "node:fs";
import { join } from "node:path";

/** A checked-out baseline. */
export interface Baseline {
  /** The ref as given on the command line. */
  ref: string;
  /** The commit it resolved to, abbreviated. */
  commit: string;
  /** The worktree's directory. */
  dir: string;
}

function git(repo: string, args: string[]): { ok: boolean; out: string } {
  const result = spawnSync("git", ["-C", repo, ...args], { encoding: "utf8", timeout: 60_000 });
  return {
    ok: result.status === 0,
    out: `${result.stdout ?? ""}${result.stderr ?? ""}`.trim() || String(result.error ?? ""),
  };
}

/**
 * Checks out REF as a detached worktree in `dir`, with `node_modules`
 * linked to the project's.
 *
 * @param repo the repository root (the current tree)
 * @param ref a commit, tag or branch
 * @param dir where to put the worktree; must not exist yet
 * @returns the baseline
 * @throws Error when REF does not name a commit, the worktree cannot be
 * made, or REF has no src/main.ts
 */
export function addBaseline(repo: string, ref: string, dir: string): Baseline {
  const resolved = git(repo, ["rev-parse", "--verify", "--quiet", "--short", `${ref}^{commit}`]);
  if (!resolved.ok) throw new Error(`--baseline ${ref}: not a commit in ${repo}`);
  const added = git(repo, ["worktree", "add", "--detach", dir, ref]);
  if (!added.ok) throw new Error(`--baseline ${ref}: git worktree add failed: ${added.out}`);
  const baseline = { ref, commit: resolved.out, dir };
  try {
    symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
    if (!existsSync(join(dir, "src/main.ts"))) {
      throw new Error(`--baseline ${ref}: it has no src/main.ts`);
    }
  } catch (error) {
    removeBaseline(repo, baseline);
    throw error;
  }
  return baseline;
}

/**
 * Removes the worktree; does nothing when it is already gone.
 *
 * @returns an error message, or undefined when it is gone
 */
export function removeBaseline(repo: string, baseline: Baseline): string | undefined {
  if (!existsSync(baseline.dir)) return undefined;
  // Unlink the symlink first: git would delete an untracked symlink, not
  // follow it, but the project's node_modules is not worth the bet.
  const link = join(baseline.dir, "node_modules");
  try {
    if (lstatSync(link).isSymbolicLink()) unlinkSync(link);
  } catch {
    // No link.
  }
  const removed = git(repo, ["worktree", "remove", "--force", baseline.dir]);
  return removed.ok
    ? undefined
    : `git worktree remove --force ${baseline.dir} failed: ${removed.out}`;
}
