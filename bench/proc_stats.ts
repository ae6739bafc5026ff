/**
 * CPU time and resident memory of a process and its descendants, read from
 * /proc. CPU time is steadier than wall time on a noisy machine, and summing
 * the tree covers nginx's worker under its master.
 *
 * @module
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ). */
let ticksPerSecond = 100;

/**
 * Sets the clock tick rate, from `getconf CLK_TCK`.
 *
 * @param ticks ticks per second
 */
export function setTicksPerSecond(ticks: number): void {
  if (Number.isFinite(ticks) && ticks > 0) ticksPerSecond = ticks;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces). */
function statFields(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

const TREE_TTL_MS = 1000;
const trees = new Map<number, { at: number; pids: number[] }>();

/**
 * Lists a process and all its descendants. The list is cached for a second,
 * since scanning /proc costs more than the 50 ms RSS sampling can afford and
 * a proxy's process tree does not change once it runs.
 *
 * @param root the top process
 * @param maxAgeMs how old a cached list may be
 * @returns pids, `root` first; empty when `root` is gone
 */
export function processTree(root: number, maxAgeMs = TREE_TTL_MS): number[] {
  const cached = trees.get(root);
  if (cached && Date.now() - cached.at < maxAgeMs) return cached.pids;
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(statFields(Number(entry))?.[1]);
    if (!Number.isFinite(ppid)) continue;
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  if (statFields(root) === undefined) return [];
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []));
  trees.set(root, { at: Date.now(), pids: tree });
  return tree;
}

function liveTree(root: number): number[] {
  const tree = processTree(root);
  if (tree.length === 0) throw new Error(`process ${root} is gone`);
  return tree;
}

/**
 * User plus system CPU seconds used so far by a process tree.
 *
 * @param root the top process
 * @returns CPU seconds
 * @throws Error when the process is gone
 */
export function cpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of liveTree(root)) {
    const fields = statFields(pid);
    // utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
    if (fields !== undefined) ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / ticksPerSecond;
}

/**
 * CPU seconds used so far by a process tree, including its children that
 * have exited and been waited for (stat fields 16 and 17): for the benchmark
 * itself, whose wrk and iperf3 runs come and go.
 *
 * @param root the top process
 * @returns CPU seconds
 */
export function cpuSecondsWithReaped(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root, 0)) {
    const f = statFields(pid);
    if (f !== undefined) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks / ticksPerSecond;
}

/**
 * CPU seconds the whole machine spent busy so far, from /proc/stat: user,
 * nice, system, irq and softirq (a process's stime may include softirq work
 * done on its behalf, such as loopback delivery).
 *
 * @returns CPU seconds over all cores
 */
export function machineCpuSeconds(): number {
  const fields = readText("/proc/stat")?.match(/^cpu\s+(.*)$/m)?.[1]?.split(/\s+/).map(Number);
  if (!fields) return 0;
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = fields;
  return (user + nice + system + irq + softirq) / ticksPerSecond;
}

function statusKiB(pid: number, key: string): number {
  const match = readText(`/proc/${pid}/status`)?.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) : 0;
}

/**
 * Resident memory of a process tree now (sum of VmRSS).
 *
 * @param root the top process
 * @returns bytes
 * @throws Error when the process is gone
 */
export function rssBytes(root: number): number {
  return liveTree(root).reduce((sum, pid) => sum + statusKiB(pid, "VmRSS") * 1024, 0);
}

/** Resident memory split by what backs it, in bytes, from /proc/PID/status. */
export interface RssParts {
  /** VmRSS: all of it. */
  rss: number;
  /** RssAnon: heap, stacks and other private memory; where a leak shows. */
  anon: number;
  /**
   * RssFile: pages of mapped files, mostly the runtime's executable, which
   * grows as new code paths first run and can be dropped under pressure.
   */
  file: number;
  /** RssShmem: shared memory. */
  shmem: number;
}

/**
 * Resident memory of a process tree now, split by what backs it (sums of
 * VmRSS, RssAnon, RssFile and RssShmem, read together from each status file).
 *
 * @param root the top process
 * @returns bytes of each
 * @throws Error when the process is gone
 */
export function rssParts(root: number): RssParts {
  const parts: RssParts = { rss: 0, anon: 0, file: 0, shmem: 0 };
  for (const pid of liveTree(root)) {
    const text = readText(`/proc/${pid}/status`) ?? "";
    const kib = (key: string) =>
      Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
    parts.rss += kib("VmRSS") * 1024;
    parts.anon += kib("RssAnon") * 1024;
    parts.file += kib("RssFile") * 1024;
    parts.shmem += kib("RssShmem") * 1024;
  }
  return parts;
}

/**
 * Peak resident memory of a process tree since its last
 * {@linkcode resetPeakRss} (sum of VmHWM).
 *
 * @param root the top process
 * @returns bytes
 * @throws Error when the process is gone
 */
export function peakRssBytes(root: number): number {
  return liveTree(root).reduce((sum, pid) => sum + statusKiB(pid, "VmHWM") * 1024, 0);
}

/**
 * Resets the peak resident memory of a process tree, by writing 5 to
 * /proc/PID/clear_refs (Linux 4.0 and later, own processes or root).
 *
 * @param root the top process
 * @returns whether every reset worked
 */
export function resetPeakRss(root: number): boolean {
  let ok = true;
  for (const pid of processTree(root)) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, "5");
    } catch {
      ok = false;
    }
  }
  return ok;
}

/**
 * CPU time used so far by a process tree, every thread, in nanoseconds: the
 * first field of /proc/PID/task/TID/schedstat (the scheduler's
 * sum_exec_runtime, what utime + stime add up to, without their 10 ms
 * ticks), for figures over spans too short for ticks.
 *
 * @param root the top process
 * @returns nanoseconds; threads that ended before the call are not counted
 * @throws Error when the process is gone
 */
export function cpuNanoseconds(root: number): number {
  let ns = 0;
  for (const pid of liveTree(root)) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of tasks) {
      const field = readText(`/proc/${pid}/task/${tid}/schedstat`)?.split(" ")[0];
      if (field !== undefined) ns += Number(field);
    }
  }
  return ns;
}
