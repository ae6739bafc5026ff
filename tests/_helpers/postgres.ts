/**
 * A real PostgreSQL server on loopback for the protocol-detection tests, and
 * the real `psql` to query it: `initdb` into a temporary folder, TLS on with a
 * self-signed certificate, trust authentication for one test role, tuned to
 * start fast (no fsync, small buffers). PostgreSQL refuses to run as root, so
 * as root it runs as the `postgres` user Debian's package creates (created
 * here when missing), through `setpriv`.
 *
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chown, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import process from "node:process";
import {
  type CommandResult,
  lookupUser,
  runChecked,
  runCommand,
  stopChild,
  type UserEntry,
  waitForOutput,
} from "./command.ts";
import { findCommand, tempDir } from "./env.ts";
import { freePort } from "./peers.ts";
import { makeCertificate } from "./tls.ts";

/**
 * The folder of PostgreSQL's server programs: the newest
 * /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else the
 * folder of an `initdb` on PATH; undefined when none is installed.
 */
export const POSTGRES_BIN: string | undefined = postgresBin();

/** Where psql is: beside the server's programs, else on PATH; undefined when missing. */
export const PSQL: string | undefined = POSTGRES_BIN !== undefined &&
    existsSync(join(POSTGRES_BIN, "psql"))
  ? join(POSTGRES_BIN, "psql")
  : findCommand("psql");

function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => existsSync(join(root, v, "bin", "initdb")))
    : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions[0] !== undefined) return join(root, versions[0], "bin");
  const initdb = findCommand("initdb");
  return initdb === undefined ? undefined : dirname(initdb);
}

/** The role the tests log in as (a superuser, trusted from loopback). */
export const POSTGRES_USER = "mb_test";

/** Where and how {@linkcode PostgresServer.psql} connects. */
export interface PsqlOptions {
  /** @default the server's port */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /**
   * libpq's `sslmode`.
   *
   * @default "require"
   */
  sslmode?: "disable" | "allow" | "prefer" | "require";
  /**
   * Milliseconds for the connection and the query.
   *
   * @default 10_000
   */
  timeout?: number;
}

/** A running PostgreSQL on 127.0.0.1 with TLS, and a psql that queries it. */
export interface PostgresServer extends AsyncDisposable {
  readonly port: number;
  /** Its temporary folder (config, keys, logs), removed by close. */
  readonly dir: string;
  readonly user: string;
  readonly database: string;
  /**
   * Runs `sql` with the real psql (`-XtAc`) against this server, or against
   * `options.port` (a balancer in front of it).
   *
   * @returns its stdout (unaligned tuples, one row a line) and exit code
   */
  psql(sql: string, options?: PsqlOptions): Promise<CommandResult>;
  /** What the server has logged. */
  log(): string;
  /** Stops the server (fast shutdown) and removes its folder. */
  close(): Promise<void>;
}

/**
 * The user PostgreSQL runs as: the current one, or as root the `postgres`
 * user, created (a system user without a home) when missing.
 */
async function serverUser(): Promise<UserEntry | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const existing = await lookupUser("postgres");
  if (existing !== undefined) return existing;
  await runChecked("useradd", ["--system", "--no-create-home", "postgres"]);
  const created = await lookupUser("postgres");
  if (created === undefined) throw new Error("useradd postgres did not create the user");
  return created;
}

/**
 * Runs `initdb` and starts `postgres` on a free loopback port, and waits
 * until it accepts connections (at most 20 s in all).
 *
 * @throws Error naming what is missing when PostgreSQL is not installed, or what it said when it did not start
 */
export async function startPostgres(): Promise<PostgresServer> {
  if (POSTGRES_BIN === undefined || PSQL === undefined) {
    throw new Error(
      "PostgreSQL is not installed: run 'bash scripts/ensure-tools.sh initdb psql'",
    );
  }
  const bin = POSTGRES_BIN;
  const psql = PSQL;
  const dir = await tempDir();
  try {
    const owner = await serverUser();
    // As root: run as `owner`, who must own the folder (mkdtemp made it 0700).
    const as = (file: string, args: string[]): [string, string[]] =>
      owner === undefined ? [file, args] : [
        "setpriv",
        [
          `--reuid=${owner.uid}`,
          `--regid=${owner.gid}`,
          "--clear-groups",
          "--",
          file,
          ...args,
        ],
      ];
    const certificate = await makeCertificate(dir.path, ["localhost"]);
    if (owner !== undefined) {
      for (const path of [dir.path, certificate.certPath, certificate.keyPath]) {
        await chown(path, owner.uid, owner.gid);
      }
    }
    const data = join(dir.path, "data");
    await runChecked(
      ...as(join(bin, "initdb"), [
        "--pgdata",
        data,
        "--username",
        POSTGRES_USER,
        "--auth",
        "trust",
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
        "--no-instructions",
      ]),
      { cwd: dir.path, timeout: 15_000 },
    );
    // Trust from loopback only, with or without TLS; nothing on a Unix socket.
    await writeFile(
      join(data, "pg_hba.conf"),
      "hostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 trust\n",
    );
    const port = await freePort();
    const settings: Record<string, string> = {
      listen_addresses: "127.0.0.1",
      port: String(port),
      unix_socket_directories: dir.path,
      ssl: "on",
      ssl_cert_file: certificate.certPath,
      ssl_key_file: certificate.keyPath,
      fsync: "off",
      synchronous_commit: "off",
      full_page_writes: "off",
      shared_buffers: "8MB",
      max_connections: "20",
      logging_collector: "off",
    };
    const [file, args] = as(join(bin, "postgres"), [
      "-D",
      data,
      ...Object.entries(settings).flatMap(([key, value]) => ["-c", `${key}=${value}`]),
    ]);
    const child: ChildProcess = spawn(file, args, {
      cwd: dir.path,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let log = "";
    child.stdout!.on("data", (chunk) => (log += chunk));
    child.stderr!.on("data", (chunk) => (log += chunk));
    child.on("error", (error) => (log += `${error}\n`));
    // SIGINT is PostgreSQL's fast shutdown: it ends its sessions and exits.
    const close = async () => {
      await stopChild(child, "SIGINT");
      await dir.cleanup();
    };
    try {
      await waitForOutput(
        child,
        () => log,
        "database system is ready to accept connections",
        "postgres",
        15_000,
      );
    } catch (error) {
      await close();
      throw error;
    }
    return {
      port,
      dir: dir.path,
      user: POSTGRES_USER,
      database: "postgres",
      psql(sql, options = {}) {
        const conninfo = [
          `host=${options.host ?? "127.0.0.1"}`,
          `port=${options.port ?? port}`,
          `sslmode=${options.sslmode ?? "require"}`,
          `user=${POSTGRES_USER}`,
          "dbname=postgres",
          "connect_timeout=5",
        ].join(" ");
        return runCommand(psql, [conninfo, "-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql], {
          timeout: options.timeout ?? 10_000,
          // A root certificate file that exists would make `require` verify the
          // server's (self-signed) certificate: name one that does not.
          env: {
            PGSSLROOTCERT: join(dir.path, "no-root.crt"),
            PGPASSFILE: join(dir.path, "no-pgpass"),
          },
        });
      },
      log: () => log,
      close,
      [Symbol.asyncDispose]: close,
    };
  } catch (error) {
    await dir.cleanup();
    throw error;
  }
}
