/**
 * A real DNS server on loopback for the discovery tests: Debian's dnsmasq
 * (installed by `.ci/ensure-tools` when missing), serving A records from a
 * hosts directory it watches (a change is live at once) and SRV records
 * from its config (a change restarts it on the same port, as an operator's
 * edit would).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Endpoint } from "../../src/runtime/types.ts";
import process from "node:process";
import { findCommand, net, tempDir } from "./env.ts";
import { freePort } from "./peers.ts";
import { sleep } from "./wait.ts";

/** One SRV record: `name` points at `target:port`. */
export interface SrvRecord {
  name: string;
  target: string;
  port: number;
  priority?: number;
  weight?: number;
}

/** The records a {@linkcode DnsServer} serves. */
export interface Zone {
  /** Host names and their IPv4 addresses. */
  hosts?: Record<string, string[]>;
  srv?: SrvRecord[];
}

/** Where dnsmasq is, or undefined when it is not installed. */
export const DNSMASQ = findCommand("dnsmasq");

/** A running dnsmasq on 127.0.0.1 answering for `*.test` only (TTL 1 s). */
export interface DnsServer {
  readonly endpoint: Endpoint;
  /** `127.0.0.1:PORT`, as a `resolver` key takes it. */
  readonly address: string;
  /** Replaces the A records (dnsmasq rereads the hosts file by itself). */
  setHosts(hosts: Record<string, string[]>): Promise<void>;
  /** Replaces the SRV records: dnsmasq restarts on the same port. */
  setSrv(srv: SrvRecord[]): Promise<void>;
  /** Stops it for a while: queries fail until {@linkcode DnsServer.resume}. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts dnsmasq serving `zone`. */
export async function startDns(zone: Zone): Promise<DnsServer> {
  if (DNSMASQ === undefined) throw new Error("dnsmasq is not installed: run .ci/ensure-tools");
  const dir = await tempDir();
  const hostsDir = join(dir.path, "hosts");
  await mkdir(hostsDir);
  const port = await freePort();
  let srv = zone.srv ?? [];
  let child: ChildProcess | undefined;

  const writeHosts = (hosts: Record<string, string[]>) =>
    writeFile(
      join(hostsDir, "zone"),
      Object.entries(hosts).flatMap(([name, addresses]) => addresses.map((a) => `${a} ${name}\n`))
        .join(""),
    );
  const start = async () => {
    const conf = join(dir.path, "dnsmasq.conf");
    await writeFile(
      conf,
      srv.map((r) =>
        `srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}\n`
      ).join(""),
    );
    const started = spawn(DNSMASQ, [
      "--keep-in-foreground",
      `--conf-file=${conf}`,
      `--port=${port}`,
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--local=/test/",
      `--hostsdir=${hostsDir}`,
      "--local-ttl=1",
      "--pid-file=",
      // As root it would switch to nobody, who may not read the temporary files.
      ...(process.getuid?.() === 0 ? ["--user=root"] : []),
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let errors = "";
    started.stderr!.on("data", (chunk) => (errors += chunk));
    // Up once it answers a TCP connect on its port.
    for (let i = 0; i < 100; i++) {
      if (started.exitCode !== null) throw new Error(`dnsmasq exited: ${errors}`);
      if (await listening(port)) {
        child = started;
        return;
      }
      await sleep(20);
    }
    started.kill("SIGKILL");
    throw new Error(`dnsmasq did not start: ${errors}`);
  };
  const stopChild = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  };

  await writeHosts(zone.hosts ?? {});
  await start();
  return {
    endpoint: { hostname: "127.0.0.1", port },
    address: `127.0.0.1:${port}`,
    async setHosts(hosts) {
      await writeHosts(hosts);
      await sleep(100); // inotify, then dnsmasq reads the file
    },
    async setSrv(records) {
      srv = records;
      await stopChild();
      await start();
    },
    pause: stopChild,
    resume: start,
    async stop() {
      await stopChild();
      await dir.cleanup();
    },
  };
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
/**
 * Whether something accepts a TCP connect on a loopback port.
 *
 * @param port the port
 * @returns true when a connect succeeded
 */
export function listening(port: number): Promise<boolean> {
  return net.connect({ hostname: "127.0.0.1", port }).then((conn) => {
    conn.reset();
    return true;
  }, () => false);
}
