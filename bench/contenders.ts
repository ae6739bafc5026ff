/**
 * The contenders: a direct connection (no proxy, the physical limit),
 * mini-balancer on Bun (also with active health checks), on Deno, on Node
 * and as the compiled executable, the smallest proxy each runtime allows
 * (references), HAProxy (`mode tcp`, one thread) and nginx (`stream`, one
 * worker), and with `--baseline REF` mini-balancer on Bun and Deno from a
 * worktree of REF. Beside them, mini-balancer on Bun and HAProxy doing the
 * same extra work (issue 10): a PROXY v2 header to each backend, and TLS
 * termination; and mini-balancer with `workers = 2`, HAProxy with two
 * threads and nginx with two workers (issue 11), which are not pinned.
 * Each start writes its config into a fresh directory, listens on a free
 * port, and runs with a raised fd limit, pinned to the proxy core unless it
 * runs on two.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LOAD_CPU, nginxArgs, nginxPreamble, nofileLimit } from "./backends.ts";
import { type Certificate, sharedCertificate } from "./certificate.ts";
import { freePort, waitListening } from "./ports.ts";
import { type Proc, start } from "./processes.ts";
import type { Tools } from "./tools.ts";

/** The core the proxy under test runs on. */
export const PROXY_CPU = 0;

/** A started contender: where clients connect, and the proxy process if any. */
export interface Running {
  port: number;
  proc: Proc | undefined;
}

/** One thing to measure. */
export interface Contender {
  /** Key in the JSON results. */
  key: string;
  /** Column title in the table. */
  name: string;
  /** Starts it in front of `backends` (ports on 127.0.0.1), round-robin. */
  start(backends: number[]): Promise<Running>;
  /**
   * The HTTP backends it needs: nginx's plain ports, or those that expect a
   * PROXY v2 header first (iperf3 and the idle peers cannot take one).
   * @default "plain"
   */
  backends?: "plain" | "proxy-v2";
  /** Whether clients speak TLS to it. @default false */
  tls?: boolean;
  /**
   * Whether it runs on the proxy core alone; the two-process and two-thread
   * contenders run on both cores, shared with wrk and the backends.
   * @default true
   */
  pinned?: boolean;
}

/**
 * Whether a contender runs the HTTP scenario alone: iperf3 and the idle
 * peers take no PROXY header, and the idle peers speak no TLS.
 *
 * @returns true for the PROXY v2 and TLS variants
 */
export function httpOnly(contender: Pick<Contender, "backends" | "tls">): boolean {
  return contender.backends === "proxy-v2" || contender.tls === true;
}

/** What a contender does beyond plain TCP forwarding (issue 10). */
interface Variant {
  /** Write a PROXY v2 header to each backend before any client byte. @default false */
  sendProxyV2?: boolean;
  /** Terminate TLS with this certificate and forward plaintext. */
  certificate?: () => Promise<Certificate>;
}

/** The {@linkcode Contender} fields that tell the harness about a variant. */
function variantFields(variant: Variant): Pick<Contender, "backends" | "tls"> {
  return {
    ...(variant.sendProxyV2 ? { backends: "proxy-v2" as const } : {}),
    ...(variant.certificate ? { tls: true } : {}),
  };
}

let starts = 0;

function freshDir(base: string, key: string): string {
  const dir = join(base, `${key}-${++starts}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** How {@linkcode launch} starts a proxy. */
interface LaunchOptions {
  /** Working directory. */
  cwd?: string;
  /** On the proxy core alone, or on both cores. @default true */
  pinned?: boolean;
  /** Listening sockets to wait for: one per SO_REUSEPORT worker. @default 1 */
  listeners?: number;
}

async function launch(
  name: string,
  port: number,
  command: string,
  args: string[],
  { cwd, pinned = true, listeners = 1 }: LaunchOptions = {},
): Promise<Running> {
  // Unpinned still needs taskset: the harness pinned itself to the load
  // core, and children inherit its affinity.
  const cpu = pinned ? PROXY_CPU : [PROXY_CPU, LOAD_CPU];
  const proc = start(name, command, args, { cpu, nofile: nofileLimit(), cwd });
  try {
    await waitListening(port, proc, 60_000, listeners);
  } catch (error) {
    await proc.stop();
    throw error;
  }
  return { port, proc };
}

/** How to start one mini-balancer contender. */
interface MiniBalancerOptions {
  key: string;
  name: string;
  /** The run's temporary directory. */
  base: string;
  /** The tree whose src/ it runs. */
  cwd: string;
  /** The command line, given the config file. */
  command: (config: string) => string[];
  /** More TOML for the [frontend] table. @default "" */
  extra?: string;
  /** PROXY v2 to the backends, TLS on the frontend. @default {} */
  variant?: Variant;
  /**
   * Worker processes (`workers = N`); more than one runs unpinned, on both
   * cores. @default 1
   */
  workers?: number;
}

function miniBalancer(
  { key, name, base, cwd, command, extra = "", variant = {}, workers = 1 }: MiniBalancerOptions,
): Contender {
  const pinned = workers === 1;
  const workersLine = pinned ? "" : `workers = ${workers}\n`;
  const sendProxy = variant.sendProxyV2 ? 'send_proxy = "v2"\n' : "";
  const start = async (topLevel: string, backends: number[]) => {
    const dir = freshDir(base, key);
    const port = await freePort();
    const certificate = await variant.certificate?.();
    const tls = certificate
      ? `tls = { cert = ${JSON.stringify(certificate.cert)}, key = ${
        JSON.stringify(certificate.key)
      } }\n`
      : "";
    const config = join(dir, "mini-balancer.toml");
    writeFileSync(
      config,
      `${workersLine}[frontend]\nbind_on = "127.0.0.1:${port}"\n${tls}${extra}` +
        backends.map((b) => `\n[[frontend.backend]]\nforward_to = "127.0.0.1:${b}"\n${sendProxy}`)
          .join("") +
        (topLevel === "" ? "" : `\n${topLevel}`),
    );
    const [file, ...args] = command(config);
    return await launch(name, port, file!, args, { cwd, pinned, listeners: workers });
  };
  const contender: Contender = {
    key,
    name,
    start: (backends) => start("", backends),
    ...variantFields(variant),
    ...(pinned ? {} : { pinned }),
  };
  miniBalancerExtra.set(contender, start);
  return contender;
}

/**
 * A mini-balancer contender with an `[admin]` listener that the harness
 * reads every second, `/metrics` as Prometheus would and `/api/status` as the
 * dashboard does, for as long as it runs.
 */
function scraped(contender: Contender): Contender {
  return {
    ...contender,
    async start(backends) {
      const adminPort = await freePort();
      const withAdmin = miniBalancerExtra.get(contender);
      const running = await withAdmin!(`[admin]\nbind_on = "127.0.0.1:${adminPort}"\n`, backends);
      const admin = `http://127.0.0.1:${adminPort}`;
      const timer = setInterval(() => {
        for (const path of ["/metrics", "/api/status"]) {
          fetch(`${admin}${path}`).then((response) => response.arrayBuffer(), () => {});
        }
      }, 1000);
      const proc = running.proc!;
      const stop = proc.stop.bind(proc);
      proc.stop = (graceMs?: number) => {
        clearInterval(timer);
        return stop(graceMs);
      };
      return running;
    },
  };
}

/** Starts a mini-balancer contender with more top-level TOML after its frontend. */
const miniBalancerExtra = new WeakMap<
  Contender,
  (topLevel: string, backends: number[]) => Promise<Running>
>();

/**
 * HAProxy in `mode tcp`, round-robin over the backends, with one thread
 * pinned or more unpinned; with `send-proxy-v2` on each server, or `ssl
 * crt` on the bind, for a variant.
 */
function haproxy(
  key: string,
  name: string,
  base: string,
  { variant = {}, threads = 1 }: { variant?: Variant; threads?: number } = {},
): Contender {
  const server = variant.sendProxyV2 ? " send-proxy-v2" : "";
  const pinned = threads === 1;
  return {
    key,
    name,
    ...variantFields(variant),
    ...(pinned ? {} : { pinned }),
    async start(backends) {
      const dir = freshDir(base, key);
      const port = await freePort();
      const certificate = await variant.certificate?.();
      const ssl = certificate ? ` ssl crt ${certificate.pem}` : "";
      const file = join(dir, "haproxy.cfg");
      writeFileSync(
        file,
        `global
  nbthread ${threads}
  maxconn ${Math.floor(nofileLimit() / 2) - 50}

defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m

frontend bench
  bind 127.0.0.1:${port}${ssl}
  default_backend servers

backend servers
  balance roundrobin
${backends.map((b, i) => `  server s${i} 127.0.0.1:${b}${server}\n`).join("")}`,
      );
      return await launch(name, port, "haproxy", ["-db", "-f", file], { pinned });
    },
  };
}

/**
 * nginx's `stream` module, round-robin over the backends, with one worker
 * pinned or more unpinned.
 */
function nginx(key: string, name: string, base: string, tools: Tools, workers = 1): Contender {
  const pinned = workers === 1;
  return {
    key,
    name,
    ...(pinned ? {} : { pinned }),
    async start(backends) {
      const dir = freshDir(base, key);
      const port = await freePort();
      const file = join(dir, "nginx.conf");
      const module = tools.nginxStreamModule ? `load_module ${tools.nginxStreamModule};\n` : "";
      writeFileSync(
        file,
        `${module}${nginxPreamble(dir, workers)}worker_rlimit_nofile ${nofileLimit()};
events { worker_connections ${nofileLimit() - 50}; }
stream {
  upstream servers {
${backends.map((b) => `    server 127.0.0.1:${b};\n`).join("")}  }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    proxy_pass servers;
  }
}
`,
      );
      return await launch(name, port, "nginx", nginxArgs(dir, file), { pinned });
    },
  };
}

/** A reference proxy started as `command PORT BACKEND_PORT...`. */
function minimalProxy(key: string, name: string, tools: Tools, command: string[]): Contender {
  return {
    key,
    name,
    async start(backends) {
      const port = await freePort();
      const [file, ...args] = command;
      return await launch(
        name,
        port,
        file!,
        [...args, String(port), ...backends.map(String)],
        { cwd: tools.repo },
      );
    },
  };
}

/** What {@linkcode contenders} adds to the usual list and command lines. */
export interface ContenderOptions {
  /**
   * A worktree of older code (`--baseline REF`): adds `bun-base` and
   * `deno-base`, started exactly as `bun` and `deno` but from that tree.
   */
  baseline?: { ref: string; dir: string };
  /**
   * A module that every contender started by `bun run` or `deno run` loads
   * before its own (`--preload FILE`, absolute), e.g. the soak's memory log.
   */
  preload?: string;
}

/**
 * Lists every contender, in table order.
 *
 * @param base the run's temporary directory
 * @param tools where the binaries are
 */
export function contenders(
  base: string,
  tools: Tools,
  { baseline, preload }: ContenderOptions = {},
): Contender[] {
  const preloading = preload === undefined ? [] : ["--preload", preload];
  const bun = (config: string) => [tools.bun, "run", ...preloading, "src/main.ts", "-c", config];
  const deno = (config: string) => [
    tools.deno,
    "run",
    ...preloading,
    "--no-prompt",
    "--allow-net",
    "--allow-read",
    "src/main_deno.ts",
    "-c",
    config,
  ];
  const here = tools.repo;
  // One certificate for both TLS contenders, made when the first one starts.
  const certificate = sharedCertificate(base, "ec-p256");
  // The code at REF, started exactly as the current tree's contender is.
  const fromBaseline = (key: string, runtime: string, command: (config: string) => string[]) =>
    baseline
      ? [
        miniBalancer({
          key,
          name: `${runtime} @${baseline.ref}`,
          base,
          cwd: baseline.dir,
          command,
        }),
      ]
      : [];
  return [
    {
      key: "direct",
      name: "direct",
      start: (backends) => Promise.resolve({ port: backends[0]!, proc: undefined }),
    },
    miniBalancer({ key: "bun", name: "mini-balancer (Bun)", base, cwd: here, command: bun }),
    ...fromBaseline("bun-base", "Bun", bun),
    // The same, with active health checks on every backend (issue 4).
    miniBalancer({
      key: "bun-health",
      name: "mini-balancer (Bun, health checks)",
      base,
      cwd: here,
      command: bun,
      extra: '[frontend.health]\ninterval = "2s"\ntimeout = "1s"\n',
    }),
    // The same, with the admin listener on and scraped every second (issue 9).
    scraped(
      miniBalancer({
        key: "bun-admin",
        name: "mini-balancer (Bun, admin scraped)",
        base,
        cwd: here,
        command: bun,
      }),
    ),
    // References, not products: the smallest proxy each runtime allows
    // (bench/minimal_proxy.ts, bench/minimal_proxy_deno.ts), so that the
    // distance to them is what our code costs, apart from the runtime's own.
    minimalProxy("bun-minimal", "minimal Bun proxy", tools, [
      tools.bun,
      "run",
      ...preloading,
      "bench/minimal_proxy.ts",
    ]),
    minimalProxy("deno-minimal", "minimal Deno proxy", tools, [
      tools.deno,
      "run",
      ...preloading,
      "--no-prompt",
      "--allow-net",
      "bench/minimal_proxy_deno.ts",
    ]),
    // The same, writing a PROXY v2 header to each backend (issue 10).
    miniBalancer({
      key: "bun-proxy-v2",
      name: "mini-balancer (Bun, send_proxy v2)",
      base,
      cwd: here,
      command: bun,
      variant: { sendProxyV2: true },
    }),
    // The same, terminating TLS with Bun.listen's tls (issue 10).
    miniBalancer({
      key: "bun-tls",
      name: "mini-balancer (Bun, TLS)",
      base,
      cwd: here,
      command: bun,
      variant: { certificate },
    }),
    miniBalancer({ key: "deno", name: "mini-balancer (Deno)", base, cwd: here, command: deno }),
    ...fromBaseline("deno-base", "Deno", deno),
    // The bundle of `npm run build:node`, on Node.
    miniBalancer({
      key: "node",
      name: "mini-balancer (Node)",
      base,
      cwd: here,
      command: (config) => [tools.node, tools.nodeBundle, "-c", config],
    }),
    miniBalancer({
      key: "compiled",
      name: "mini-balancer (compiled)",
      base,
      cwd: here,
      command: (config) => [tools.compiled, "-c", config],
    }),
    haproxy("haproxy", "HAProxy", base),
    haproxy("haproxy-proxy-v2", "HAProxy (send-proxy-v2)", base, {
      variant: { sendProxyV2: true },
    }),
    haproxy("haproxy-tls", "HAProxy (TLS)", base, { variant: { certificate } }),
    nginx("nginx", "nginx", base, tools),
    // Two processes or threads each, on both cores (issue 11).
    miniBalancer({
      key: "bun-workers2",
      name: "mini-balancer (Bun, workers = 2)",
      base,
      cwd: here,
      command: bun,
      workers: 2,
    }),
    haproxy("haproxy-nbthread2", "HAProxy (nbthread 2)", base, { threads: 2 }),
    nginx("nginx-workers2", "nginx (worker_processes 2)", base, tools, 2),
  ];
}
