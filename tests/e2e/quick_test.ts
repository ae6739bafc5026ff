/**
 * Quick mode with the real program: `--listen --to --to` serves two echo
 * backends in the order given, SIGHUP keeps it serving, `--listen udp:`
 * answers through a UDP echo backend, `-c` beside `--listen` is one line and
 * exit 2, and `--print-config` prints a file that `check -c` accepts and
 * the program starts from.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bytes,
  eventually,
  exchange,
  programCommand,
  type ProgramKind,
  runProgram,
  signalProgram,
  startProgram,
  tempDir,
  text,
  udpClient,
  udpEcho,
} from "../_helpers/index.ts";
import { buildBefore, kinds, programBackends } from "./_setup.ts";

/** Deno's UDP sockets are behind --unstable-net. */
const DENO_FLAGS = ["--unstable-net"];

/** The program in quick mode, started and listening on the port its log names. */
interface QuickProgram {
  child: ChildProcess;
  port: number;
  stderr(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the program with quick mode's flags (and -v, for the port) and
 * waits, 20 s at most, for its "listening" line; kills it when it does not come.
 */
async function startQuick(kind: ProgramKind, args: string[]): Promise<QuickProgram> {
  const [command, ...rest] = programCommand(kind, DENO_FLAGS);
  const child = spawn(command!, [...rest, ...args, "-v"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on("close", (code) => resolve(exitCode = code))
  );
  const listening = /local_address=(?:udp:)?[^ ]*:(\d+)\}[^\n]*listening for/;
  await eventually(
    () => listening.test(stderr) || exitCode !== undefined,
    "the balancer to listen",
    20_000,
  ).catch(() => {});
  const match = listening.exec(stderr);
  if (match === null) {
    if (exitCode === undefined) signalProgram(child, "SIGKILL");
    await exited;
    throw new Error(`the balancer did not start:\n${stderr}`);
  }
  return {
    child,
    port: Number(match[1]),
    stderr: () => stderr,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (exitCode === undefined) signalProgram(child, signal);
      return await exited;
    },
  };
}

/** What a backend of {@linkcode programBackends} answers "x" with: its greeting. */
async function whoAnswers(port: number): Promise<string> {
  return text((await exchange(port, bytes("x"))).data);
}

for (const kind of kinds) {
  describe(`quick mode as ${kind}`, () => {
    const backends = programBackends();

    buildBefore(kind);

    it("serves --to in the order given, and keeps serving on SIGHUP", async () => {
      const [b1, b2] = backends;
      const program = await startQuick(kind, [
        "--listen",
        "127.0.0.1:0",
        "--to",
        b2!.address,
        "--to",
        b1!.address,
      ]);
      try {
        // Round robin in the order of the flags: b2 first, then b1, then b2 again.
        assert.equal(await whoAnswers(program.port), "b2:x");
        assert.equal(await whoAnswers(program.port), "b1:x");
        signalProgram(program.child, "SIGHUP");
        await eventually(
          () => /reload asked in quick mode: nothing to re-read/.test(program.stderr()),
          "the SIGHUP line",
          5_000,
        );
        assert.equal(await whoAnswers(program.port), "b2:x");
        assert.doesNotMatch(program.stderr(), /reload rejected|ERROR/);
        assert.equal(await program.stop(), 0);
      } finally {
        await program.stop("SIGKILL");
      }
    });

    it("answers through a UDP backend with --listen udp:", async () => {
      const echo = await udpEcho({ prefix: "u1:" });
      const program = await startQuick(kind, [
        "--listen",
        "udp:127.0.0.1:0",
        "--to",
        echo.address,
      ]);
      const client = await udpClient(program.port);
      try {
        assert.equal(text(await client.request(bytes("ping"), 5_000)), "u1:ping");
        assert.equal(echo.datagrams, 1);
        assert.equal(await program.stop(), 0);
      } finally {
        client.close();
        echo.close();
        await program.stop("SIGKILL");
      }
    });

    it("refuses -c beside --listen with one line and exit 2", async () => {
      const { code, stdout, stderr } = await runProgram(kind, [
        "-c",
        "mini-balancer.toml",
        "--listen",
        "127.0.0.1:0",
        "--to",
        backends[0]!.address,
      ]);
      assert.equal(code, 2);
      assert.equal(stdout, "");
      assert.equal(
        stderr.split("\n")[0],
        "mini-balancer: --listen cannot stand beside -c/--config: give a config file or the flags",
      );
      assert.doesNotMatch(stderr, /\bat \S+:\d+/); // no stack trace
    });

    it("--print-config prints a file that check -c accepts and that serves", async () => {
      const [b1, b2] = backends;
      const flags = ["--listen", "127.0.0.1:0", "--to", b1!.address, "--to", b2!.address];
      const printed = await runProgram(kind, [...flags, "--print-config"]);
      assert.equal(printed.code, 0, printed.stderr);
      assert.equal(printed.stderr, "");
      const dir = await tempDir();
      try {
        const file = join(dir.path, "quick.toml");
        await writeFile(file, printed.stdout);
        const checked = await runProgram(kind, ["check", "-c", file]);
        assert.equal(checked.code, 0, checked.stderr);
        assert.match(checked.stdout, new RegExp(`config "${file}" is valid: 1 frontend`));
        const program = await startProgram(kind, printed.stdout, [], DENO_FLAGS);
        try {
          assert.equal(await whoAnswers(program.port), "b1:x");
          assert.equal(await whoAnswers(program.port), "b2:x");
        } finally {
          await program.cleanup();
        }
      } finally {
        await dir.cleanup();
      }
    });
  });
}
