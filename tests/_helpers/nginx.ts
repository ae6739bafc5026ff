/**
 * A real nginx on loopback for the protocol-detection tests: plain HTTP on a
 * free port, answering with a body that names it, so a test sees which
 * backend a request reached. Its config, pid file, logs and temporary files
 * live in its own folder; it shares its preamble and command line with the
 * benchmark's nginx (bench/backends.ts).
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { nginxArgs, nginxPreamble } from "../../bench/backends.ts";
import { stopChild } from "./command.ts";
import { findCommand, tempDir } from "./env.ts";
import { listening } from "./dns.ts";
import { freePort } from "./peers.ts";
import { sleep } from "./wait.ts";

/** Where nginx is (Debian: /usr/sbin), or undefined when it is not installed. */
export const NGINX = findCommand("nginx");

/** Options of {@linkcode startNginx}. */
export interface NginxOptions {
  /**
   * The `Host` names it serves. Without them it answers every request;
   * with them, a request for another host gets 421 and the body
   * `misdirected NAME\n`, so a test sees that the `Host` header arrived.
   */
  hosts?: string[];
  /**
   * Paths answered with a status of their own (`{ "/primary": 503 }`) and the
   * body `NAME STATUS\n`, for HTTP health checks; other paths as usual.
   */
  paths?: Record<string, number>;
}

/** A running nginx on 127.0.0.1. */
export interface NginxServer extends AsyncDisposable {
  readonly port: number;
  /** Its temporary folder (config, keys, logs), removed by close. */
  readonly dir: string;
  /** What it answers with status 200: `backend NAME\n`. */
  readonly body: string;
  /** What it printed and its error log so far. */
  log(): string;
  /** Stops nginx and removes its folder. */
  close(): Promise<void>;
}

/**
 * Starts nginx (`daemon off`, one worker) serving `backend NAME\n` on a free
 * loopback port, and waits until it accepts connections (at most 10 s).
 *
 * @param name what its body says it is (letters, digits, `.`, `-`, `_`)
 * @param options the host names it serves
 * @throws Error when nginx is not installed, or with its log when it did not start
 */
export async function startNginx(name: string, options: NginxOptions = {}): Promise<NginxServer> {
  if (NGINX === undefined) {
    throw new Error("nginx is not installed: run 'bash scripts/ensure-tools.sh nginx'");
  }
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new RangeError(`nginx name "${name}" is not a word`);
  const dir = await tempDir();
  const port = await freePort();
  const body = `backend ${name}\n`;
  const text = (s: string) => JSON.stringify(s).replaceAll("$", "\\$");
  const hosts = options.hosts ?? [];
  const paths = Object.entries(options.paths ?? {}).map(([path, status]) => {
    if (!/^\/[A-Za-z0-9._\/-]*$/.test(path)) {
      throw new RangeError(`nginx path "${path}" is not plain`);
    }
    return `    location = ${path} { default_type text/plain; return ${status} "${name} ${status}\\n"; }\n`;
  }).join("");
  const server = (names: string, status: number, answer: string, extra = "") =>
    `  server {
    listen 127.0.0.1:${port}${extra};
    server_name ${names};
    location / { default_type text/plain; return ${status} ${text(answer)}; }
${paths}  }
`;
  const servers = hosts.length === 0
    ? server('""', 200, body)
    : server(hosts.join(" "), 200, body) +
      server('""', 421, `misdirected ${name}\n`, " default_server");
  const file = join(dir.path, "nginx.conf");
  await writeFile(
    file,
    `${nginxPreamble(dir.path)}events { worker_connections 256; }
http {
  access_log off;
  server_tokens off;
${servers}}
`,
  );
  const child: ChildProcess = spawn(NGINX, nginxArgs(dir.path, file), {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  child.on("error", (error) => (output += `${error}\n`));
  const log = () => {
    try {
      return output + readFileSync(join(dir.path, "error.log"), "utf8");
    } catch {
      return output;
    }
  };
  // SIGQUIT is nginx's graceful stop: its worker exits with the master.
  const close = async () => {
    await stopChild(child, "SIGQUIT");
    await dir.cleanup();
  };
  const deadline = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      const said = log();
      await close();
      throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s: ${said}`);
    }
    await sleep(10);
  }
  return { port, dir: dir.path, body, log, close, [Symbol.asyncDispose]: close };
}
