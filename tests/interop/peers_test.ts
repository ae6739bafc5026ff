/**
 * The real peers of the protocol-detection tests work on their own, with no
 * balancer between: the `ssh` client logs into sshd and runs a command, psql
 * queries PostgreSQL over TLS, curl reaches nginx by `Host`. Each also checks
 * that start-up and close stay fast, and that close removes what it made.
 *
 * Each skips, saying why, when its tools are missing and we are not root
 * (root runs `scripts/ensure-tools.sh` first, through `npm test`'s pretest);
 * as root a missing tool fails, naming it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { afterEach, describe, it } from "node:test";
import {
  type CommandResult,
  findCommand,
  NGINX,
  POSTGRES_BIN,
  PSQL,
  runCommand,
  skipReason,
  SSH,
  SSH_KEYGEN,
  SSHD,
  startNginx,
  startPostgres,
  startSshd,
} from "../_helpers/index.ts";

const CURL = findCommand("curl");
/** The certificate for PostgreSQL's TLS is made with it. */
const OPENSSL = findCommand("openssl");

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs `start`, registers its close, and returns it with its start-up time in ms. */
async function timed<T extends { close(): Promise<void> }>(
  start: () => Promise<T>,
): Promise<[T, number]> {
  const began = performance.now();
  const peer = await start();
  cleanups.push(() => peer.close());
  return [peer, performance.now() - began];
}

/** Closes `peer`, and asserts that it took under `ms` and removed its folder. */
async function closes(peer: { dir: string; close(): Promise<void> }, ms: number) {
  cleanups.splice(0);
  const began = performance.now();
  await peer.close();
  const took = performance.now() - began;
  assert.ok(took < ms, `close took ${took.toFixed(0)} ms, more than ${ms}`);
  assert.equal(existsSync(peer.dir), false, `${peer.dir} is still there after close`);
}

/** Asserts a tool's run ended with `code` and printed `stdout`, showing its stderr if not. */
function ran(result: CommandResult, stdout: string, code = 0) {
  assert.deepEqual({ stdout: result.stdout, code: result.code }, { stdout, code }, result.stderr);
}

describe("test peers, directly", () => {
  it(
    "sshd lets the ssh client log in with the test key and run a command, and offers no password login",
    { skip: skipReason("peers_test", { sshd: SSHD, ssh: SSH, "ssh-keygen": SSH_KEYGEN }) },
    async () => {
      const [sshd, startup] = await timed(startSshd);
      console.log(`peers_test: sshd started in ${startup.toFixed(0)} ms`);
      assert.ok(startup < 5_000, `sshd took ${startup.toFixed(0)} ms to start`);
      ran(await sshd.run("echo hi"), "hi\n");
      assert.match(
        sshd.log(),
        new RegExp(`Accepted publickey for ${sshd.user} from 127\\.0\\.0\\.1`),
      );
      // Without the key, the server offers nothing else: no password login.
      const keyless = await runCommand(SSH!, [
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "PubkeyAuthentication=no",
        "-p",
        String(sshd.port),
        `${sshd.user}@127.0.0.1`,
        "echo hi",
      ]);
      assert.equal(keyless.code, 255);
      assert.match(keyless.stderr, /Permission denied \(publickey\)/);
      await closes(sshd, 5_000);
    },
  );

  it(
    "PostgreSQL answers psql over TLS (sslmode=require)",
    { skip: skipReason("peers_test", { initdb: POSTGRES_BIN, psql: PSQL, openssl: OPENSSL }) },
    async () => {
      const [postgres, startup] = await timed(startPostgres);
      console.log(`peers_test: postgres started in ${startup.toFixed(0)} ms`);
      assert.ok(startup < 8_000, `postgres took ${startup.toFixed(0)} ms to start`);
      ran(await postgres.psql("select 1"), "1\n");
      ran(await postgres.psql("show ssl"), "on\n");
      // This very connection is encrypted, not only the server able to.
      ran(await postgres.psql("select ssl from pg_stat_ssl where pid = pg_backend_pid()"), "t\n");
      // It listens on loopback only, its socket file in its own folder.
      ran(await postgres.psql("show listen_addresses"), "127.0.0.1\n");
      ran(await postgres.psql("show unix_socket_directories"), `${postgres.dir}\n`);
      // PostgreSQL refuses root: as root the helper runs it as another user.
      const checkpointer = await postgres.psql(
        "select pid from pg_stat_activity where backend_type = 'checkpointer'",
      );
      const owner = await runCommand("ps", ["-o", "uid=", "-p", checkpointer.stdout.trim()]);
      assert.match(
        owner.stdout,
        /^\s*[1-9]\d*\n$/,
        `the server's uid: ${owner.stdout}${owner.stderr}`,
      );
      await closes(postgres, 5_000);
    },
  );

  it(
    "nginx answers curl with its name for its Host, and 421 for another",
    { skip: skipReason("peers_test", { nginx: NGINX, curl: CURL }) },
    async () => {
      const [nginx, startup] = await timed(() => startNginx("a", { hosts: ["a.test"] }));
      console.log(`peers_test: nginx started in ${startup.toFixed(0)} ms`);
      assert.ok(startup < 5_000, `nginx took ${startup.toFixed(0)} ms to start`);
      const url = `http://a.test:${nginx.port}/`;
      const curl = (host: string) =>
        runCommand(CURL!, [
          "-sS",
          "--max-time",
          "5",
          "-w",
          "%{http_code}\n",
          "--resolve",
          `${host}:${nginx.port}:127.0.0.1`,
          url.replace("a.test", host),
        ]);
      ran(await curl("a.test"), "backend a\n200\n");
      ran(await curl("b.test"), "misdirected a\n421\n");
      await closes(nginx, 5_000);
    },
  );
});
