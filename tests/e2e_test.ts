/**
 * The real program, started as a user starts it: under `bun test`, with
 * `bun run src/main.ts`, as the compiled executable and as the Node bundle
 * under `node`; under `deno test`, with `deno run src/main_deno.ts`. Real
 * echo backends, real clients, socat. The executable and the bundle are
 * built first whenever they are missing or older than the sources, so these
 * tests never run a stale build.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { encodeProxyV1, encodeProxyV2 } from "../src/protocol/proxy.ts";
import { DNSMASQ, startDns } from "./_dns.ts";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  bytes,
  closedPort,
  concat,
  configText,
  connect,
  echoServer,
  eventually,
  exchange,
  freePort,
  freePorts,
  makeCertificate,
  net,
  programCommand,
  type ProgramKind,
  randomBytes,
  recordingBackend,
  ROOT,
  runProgram,
  sha256,
  signalProgram,
  sleep,
  startProgram,
  tempDir,
  text,
  tlsClient,
  tlsTables,
  within,
} from "./_helpers.ts";
import type { Conn } from "../src/runtime/types.ts";
import { assertPaced, pacingBackend, pacingClient } from "./_pacing.ts";

const kinds: ProgramKind[] = net.runtime === "bun" ? ["bun", "executable", "node"] : ["deno"];
const data = (name: string) => join(ROOT, "tests/testdata", name);

/** What the executable and the Node bundle are built from: a change to any of them calls for a new build. */
const BUILD_INPUTS = ["src", "package.json", "package-lock.json", "bunfig.toml"];

/** The built files, and the `bun build` arguments that make each, as its npm script does. */
const BUILDS = {
  executable: {
    file: join(ROOT, "dist/mini-balancer"),
    args: ["--compile", "--minify", "src/main.ts"], // npm run compile
  },
  node: {
    file: join(ROOT, "dist/mini-balancer.mjs"),
    args: ["--target=node", "src/main_node.ts"], // npm run build:node
  },
};

/** The latest modification time of a file, or of any file under a folder. */
async function newestChange(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.mtimeMs;
  const entries = await readdir(path);
  const times = await Promise.all(entries.map((entry) => newestChange(join(path, entry))));
  return Math.max(info.mtimeMs, ...times);
}

/** When `file` was built, or -1 when it is missing. */
async function builtAt(file: string): Promise<number> {
  return (await stat(file).catch(() => undefined))?.mtimeMs ?? -1;
}

/** The newest change among the build's inputs. */
async function sourcesChangedAt(): Promise<number> {
  const times = await Promise.all(BUILD_INPUTS.map((input) => newestChange(join(ROOT, input))));
  return Math.max(...times);
}

/**
 * Builds the executable or the Node bundle as its npm script does, unless it
 * is newer than every source: `bun test` alone then works on a fresh clone
 * and never tests a stale build.
 */
async function build(kind: keyof typeof BUILDS): Promise<void> {
  const { file, args } = BUILDS[kind];
  if (await builtAt(file) >= await sourcesChangedAt()) return;
  await new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath, // bun, running these tests
      ["build", ...args, "--outfile", file],
      { cwd: ROOT },
      (error, _stdout, stderr) => {
        if (error) reject(new Error(`cannot build ${file}: ${error.message} ${stderr}`));
        else resolve();
      },
    );
  });
}

function socat(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("bash", ["-c", command], (error, stdout, stderr) => {
      if (error) reject(new Error(`${command}: ${error.message} ${stderr}`));
      else resolve(stdout);
    });
  });
}

function rssKiB(pid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile("ps", ["-o", "rss=", "-p", String(pid)], (error, stdout) => {
      if (error) reject(error);
      else resolve(Number(stdout.trim()));
    });
  });
}

/** VmHWM, read by a child process: Deno asks for --allow-all to read /proc itself. */
function peakRssKiB(pid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile("grep", ["VmHWM", `/proc/${pid}/status`], (error, stdout) => {
      if (error) reject(error);
      else resolve(Number(/(\d+)/.exec(stdout)?.[1]));
    });
  });
}

/** Why the DNS tests cannot run here, if they cannot. */
const dnsSkip = DNSMASQ === undefined
  ? "dnsmasq is not installed (.ci/ensure-tools installs it)"
  : false;

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backends = [echoServer({ greeting: "b1:" }), echoServer({ greeting: "b2:" })];
    after(() => backends.forEach((backend) => backend.close()));

    if (kind === "executable" || kind === "node") {
      const { file } = BUILDS[kind];
      // Compiling takes a few seconds: more than bun test's default timeout.
      before(() => build(kind), { timeout: 120_000 });

      it("is built from the current sources", async () => {
        const built = await builtAt(file);
        assert.ok(built >= 0, `${file} was not built`);
        assert.ok(built >= await sourcesChangedAt(), `${file} is older than the sources`);
      });
    }

    it("sends connections round-robin and logs the original's lines", async () => {
      const program = await startProgram(kind, configText(backends.map((b) => b.address)));
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 6; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "b2:c2", "b1:c3", "b2:c4", "b1:c5", "b2:c6"]);
        await eventually(() => program.stderr().split("served connection").length === 7, "logs");
        const log = program.stderr();
        assert.match(
          log,
          /INFO frontend\{local_address=127\.0\.0\.1:\d+\}: .*listening for connections/,
        );
        assert.match(
          log,
          /handle_connection\{peer_address=127\.0\.0\.1:\d+\}: .*serving connection/,
        );
        assert.match(
          log,
          new RegExp(
            `through\\{target_address=${backends[0]!.address}\\}: .*opened client connection`,
          ),
        );
        assert.match(
          log,
          /served connection bytes_from_client=2 bytes_from_backend=5 duration_ms=\d+/,
        );
        // Ctrl-C stops it cleanly, like SIGTERM.
        assert.equal(await program.stop("SIGINT"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("finds its backends by DNS, follows a change and logs it", { skip: dnsSkip }, async () => {
      const port = await freePort();
      const first = recordingBackend({ hostname: "127.0.0.2", port });
      const second = recordingBackend({ hostname: "127.0.0.3", port });
      const dns = await startDns({ hosts: { "web.test": ["127.0.0.2"] } });
      const program = await startProgram(
        kind,
        `resolver = "${dns.address}"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `min_ttl = "0s"\nmax_ttl = "100ms"\n` +
          `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:${port}"\n`,
      );
      try {
        assert.equal(text((await exchange(program.port, bytes("one"))).data), "one");
        assert.equal(first.connections, 1);
        await dns.setHosts({ "web.test": ["127.0.0.3"] });
        await eventually(
          () => /discovered backends changed .*web#127\.0\.0\.3/.test(program.stderr()),
          "the change in the log",
        );
        assert.equal(text((await exchange(program.port, bytes("two"))).data), "two");
        assert.equal(second.connections, 1, "the new address took the next connection");
      } finally {
        await program.cleanup();
        await dns.stop();
        first.close();
        second.close();
      }
    });

    it("serves 500 concurrent connections", async () => {
      const program = await startProgram(kind, configText([backends[0]!.address]));
      try {
        const results = await Promise.all(
          Array.from({ length: 500 }, async (_, i) => {
            const payload = bytes(`connection ${i} `.repeat(50));
            const { data } = await exchange(program.port, payload);
            return text(data) === `b1:${text(payload)}`;
          }),
        );
        assert.equal(results.filter(Boolean).length, 500);
      } finally {
        await program.cleanup();
      }
    });

    it("retries the clients of a dead backend on the live one", async () => {
      const dead = `127.0.0.1:${closedPort()}`;
      const program = await startProgram(kind, configText([backends[0]!.address, dead]));
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 4; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "b1:c2", "b1:c3", "b1:c4"]);
        await eventually(() => /trying another/.test(program.stderr()), "the retry log");
        assert.match(
          program.stderr(),
          new RegExp(
            `WARN .*through\\{target_address=${dead}\\}: .*connect to backend failed, trying another reason="connection refused" next_target=${
              backends[0]!.address
            }`,
          ),
        );
      } finally {
        await program.cleanup();
      }
    });

    it("closes the clients of a dead backend with retries = 0 and serves the others", async () => {
      const dead = `127.0.0.1:${closedPort()}`;
      const program = await startProgram(
        kind,
        configText([backends[0]!.address, dead], "retries = 0"),
      );
      try {
        const replies: string[] = [];
        for (let i = 1; i <= 4; i++) {
          replies.push(text((await exchange(program.port, bytes(`c${i}`))).data));
        }
        assert.deepEqual(replies, ["b1:c1", "", "b1:c3", ""]);
        await eventually(
          () => /failed to serve connection/.test(program.stderr()),
          "the failure log",
        );
        assert.match(
          program.stderr(),
          new RegExp(
            `WARN .*through\\{target_address=${dead}\\}: .*failed to serve connection reason="connection refused"`,
          ),
        );
        assert.equal(program.child.exitCode, null, "still running");
      } finally {
        await program.cleanup();
      }
    });

    it("answers `echo hi | socat - tcp:…` with hi (half-close)", async () => {
      const plain = echoServer();
      const program = await startProgram(kind, configText([plain.address]));
      try {
        assert.equal(await socat(`echo hi | socat - tcp:127.0.0.1:${program.port}`), "hi\n");
        const big = randomBytes(8 * 1024 * 1024, 9);
        const dir = await tempDir();
        try {
          const file = join(dir.path, "payload.bin");
          await writeFile(file, big);
          const digest = await socat(
            `socat -b 65536 - tcp:127.0.0.1:${program.port} < ${file} | sha256sum`,
          );
          assert.equal(digest.split(" ")[0], sha256(big));
        } finally {
          await dir.cleanup();
        }
      } finally {
        plain.close();
        await program.cleanup();
      }
    });

    it("paces both directions at max_bytes_per_second, every second within ±25 %", async () => {
      const [upload, download] = [randomBytes(400_000, 11), randomBytes(400_000, 12)];
      const backend = pacingBackend(download);
      const program = await startProgram(
        kind,
        configText([backend.address], 'max_bytes_per_second = "100KiB"'),
      );
      try {
        const client = await pacingClient(program.port, upload);
        await within(client.ended, 15_000, "the download");
        const got = backend.connection!;
        await within(got.ended, 5_000, "the upload");
        assert.equal(sha256(got.received()), sha256(upload), "every uploaded byte");
        assert.equal(sha256(client.received()), sha256(download), "every downloaded byte");
        assertPaced(got.arrivals, upload.length, 100 * 1024);
        assertPaced(client.arrivals, download.length, 100 * 1024);
      } finally {
        backend.close();
        await program.cleanup();
      }
    });

    it("finishes open connections on SIGTERM, then exits 0", async () => {
      const plain = echoServer();
      const program = await startProgram(kind, configText([plain.address]));
      try {
        const client = await connect(program.port);
        client.conn.write(bytes("before"));
        await eventually(() => client.receivedLength() === 6, "the first echo");
        signalProgram(program.child, "SIGTERM");
        await eventually(() => /shutting down/.test(program.stderr()), "the shutdown log");
        await assert.rejects(connect(program.port), "no new connections are accepted");
        client.conn.write(bytes(" after"));
        client.conn.end();
        await client.closed;
        assert.equal(text(client.received()), "before after");
        assert.equal(await program.exited, 0);
      } finally {
        plain.close();
        await program.cleanup();
      }
    });

    it("keeps its memory bounded while a backend does not read", async () => {
      let received = 0;
      const stalled = new Set<Conn>();
      const sink = net.listen({
        hostname: "127.0.0.1",
        port: 0,
        onConnection(conn) {
          stalled.add(conn);
          conn.setHandlers({
            data: (chunk) => void (received += chunk.length),
            end: () => conn.end(),
            drain() {},
            close() {},
          });
          conn.pause();
        },
      });
      const program = await startProgram(kind, configText([`127.0.0.1:${sink.address.port}`]));
      try {
        const pid = program.child.pid!;
        const before = await rssKiB(pid);
        const total = 128 * 1024 * 1024;
        const client = await connect(program.port);
        const sending = client.send(randomBytes(total, 5));
        await sleep(1500);
        const during = await rssKiB(pid);
        for (const conn of stalled) conn.resume();
        await sending;
        client.conn.end();
        await eventually(() => received === total, "the backend to read everything", 60_000);
        client.conn.close();
        // 128 MiB were pushed at a backend that read nothing for 1.5 s.
        console.log(`${kind}: RSS ${before} KiB idle, ${during} KiB with the backend stalled`);
        assert.ok(
          during - before < 48 * 1024,
          `RSS grew by ${during - before} KiB while the backend stalled`,
        );
      } finally {
        sink.close();
        await program.cleanup();
      }
    });

    it("keeps its peak memory near idle while 512 MiB stream through", async () => {
      let received = 0;
      const sink = net.listen({
        hostname: "127.0.0.1",
        port: 0,
        onConnection(conn) {
          conn.setHandlers({
            data: (chunk) => void (received += chunk.length),
            end: () => conn.end(),
            drain() {},
            close() {},
          });
        },
      });
      const program = await startProgram(kind, configText([`127.0.0.1:${sink.address.port}`]));
      try {
        const pid = program.child.pid!;
        const idle = await rssKiB(pid);
        // Its start-up peak is its idle RSS, so VmHWM afterwards is the streaming peak.
        const block = randomBytes(16 * 1024 * 1024, 6);
        const rounds = 32;
        const client = await connect(program.port);
        for (let i = 0; i < rounds; i++) await client.send(block);
        client.conn.end();
        await eventually(() => received === rounds * block.length, "the sink to read it", 60_000);
        await client.closed;
        const peak = await peakRssKiB(pid);
        console.log(`${kind}: RSS ${idle} KiB idle, peak ${peak} KiB while 512 MiB streamed`);
        // Node gives every read an ArrayBuffer of its own, and Node 20 cannot
        // free one before the collector does (no ArrayBuffer.transfer): about
        // 32 MiB of them wait for it (process.memoryUsage().arrayBuffers).
        const bound = kind === "node" ? 48 * 1024 : 24 * 1024;
        assert.ok(peak - idle < bound, `peak RSS ${peak - idle} KiB above idle`);
      } finally {
        sink.close();
        await program.cleanup();
      }
    });

    it("refuses a port already in use with exit code 1 and one line", async () => {
      const taken = echoServer();
      const dir = await tempDir();
      try {
        const file = join(dir.path, "lb.toml");
        await writeFile(
          file,
          bytes(configText([backends[0]!.address]).replace("127.0.0.1:0", taken.address)),
        );
        const { code, stderr } = await runProgram(kind, ["-c", file]);
        assert.equal(code, 1);
        assert.equal(
          stderr.trim(),
          `mini-balancer: cannot listen on ${taken.address} for frontend \"default\": address already in use`,
        );
      } finally {
        taken.close();
        await dir.cleanup();
      }
    });

    const badConfigs: [file: string, message: RegExp][] = [
      ["syntax_error.toml", /TOML syntax error at line 2, column 26/],
      ["mistyped_forward_to.toml", /frontend\.backend\[1\]\.forward_to must be a string/],
      ["no_backends.toml", /frontend\.backend is required/],
      ["port_out_of_range.toml", /frontend\.bind_on must be host:port/],
    ];
    for (const [file, message] of badConfigs) {
      it(`exits 1 with one clear line for ${file}`, async () => {
        const { code, stderr } = await runProgram(kind, ["-c", data(file)]);
        assert.equal(code, 1);
        const lines = stderr.trim().split("\n");
        assert.equal(lines.length, 1, stderr);
        assert.ok(lines[0]!.startsWith(`mini-balancer: Cannot load config "${data(file)}": `));
        assert.match(lines[0]!, message);
      });
    }

    it("reads mini-balancer.toml from the working directory by default", async () => {
      const dir = await tempDir();
      try {
        const { code, stderr } = await runProgram(kind, [], dir.path);
        assert.equal(code, 1);
        assert.equal(
          stderr.trim(),
          'mini-balancer: Cannot load config "mini-balancer.toml": file not found',
        );
      } finally {
        await dir.cleanup();
      }
    });

    it("reloads its config on SIGHUP without dropping connections, and keeps it when the new one is bad", async () => {
      const [b1, b2] = backends;
      const program = await startProgram(kind, configText([b1!.address]));
      try {
        const held = await connect(program.port);
        await eventually(() => held.receivedLength() === 3, "the first greeting");
        await writeFile(program.file, configText([b1!.address, b2!.address]));
        signalProgram(program.child, "SIGHUP");
        await eventually(() => /reloaded config/.test(program.stderr()), "the reload line");
        assert.match(
          program.stderr(),
          new RegExp(`INFO .*reloaded config .*backends_added=default/${b2!.address}`),
        );
        const replies: string[] = [];
        for (let i = 0; i < 4; i++) {
          replies.push(text((await exchange(program.port, bytes("x"))).data));
        }
        assert.deepEqual(replies, ["b1:x", "b2:x", "b1:x", "b2:x"]);
        await writeFile(program.file, "[frontend]\nbind_on = 7070\n");
        signalProgram(program.child, "SIGHUP");
        await eventually(() => /reload rejected/.test(program.stderr()), "the rejection");
        assert.match(
          program.stderr(),
          /ERROR .*reload rejected: Cannot load config ".*": frontend.bind_on must be a string: current value is 7070/,
        );
        assert.equal(
          text((await exchange(program.port, bytes("y"))).data),
          "b1:y",
          "still serving",
        );
        held.conn.write(bytes("z"));
        held.conn.end();
        await held.closed;
        assert.equal(text(held.received()), "b1:z", "the connection from before both reloads");
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("reloads its config when the file changes with --watch", async () => {
      const [b1, b2] = backends;
      const program = await startProgram(kind, configText([b1!.address]), ["--watch"]);
      try {
        // Written as editors do: a new file renamed over the old one.
        await writeFile(`${program.file}.new`, configText([b2!.address]));
        await rename(`${program.file}.new`, program.file);
        await eventually(() => /reloaded config/.test(program.stderr()), "the reload line");
        assert.equal(text((await exchange(program.port, bytes("w"))).data), "b2:w");
        assert.equal(program.stderr().split("reloaded config").length, 2, "one reload per change");
      } finally {
        await program.cleanup();
      }
    });

    it("serves metrics, status and the dashboard on its admin listener", async () => {
      const program = await startProgram(
        kind,
        configText([backends[0]!.address]) +
          '\n[admin]\nbind_on = "127.0.0.1:0"\ntoken = "an-e2e-token-0123"\n',
      );
      try {
        await eventually(() => /admin listening/.test(program.stderr()), "the admin line");
        const admin = `http://${/admin listening address=(\S+)/.exec(program.stderr())![1]}`;
        for (let i = 0; i < 3; i++) await exchange(program.port, bytes("m"));
        const metrics = await (await fetch(`${admin}/metrics`)).text();
        assert.match(
          metrics,
          /^mini_balancer_connections_accepted_total\{frontend="default"\} 3$/m,
        );
        assert.match(
          metrics,
          new RegExp(
            `^mini_balancer_build_info\\{.*runtime="${kind === "executable" ? "bun" : kind}"`,
            "m",
          ),
        );
        const status = await (await fetch(`${admin}/api/status`)).json();
        assert.equal(status.frontends[0].backends[0].total, 3);
        const page = await fetch(`${admin}/`);
        assert.match(page.headers.get("content-type")!, /^text\/html/);
        assert.match(await page.text(), /<title>mini-balancer<\/title>/);
        const drain = `${admin}/api/frontends/default/backends/${
          encodeURIComponent(backends[0]!.address)
        }/drain`;
        assert.equal((await fetch(drain, { method: "POST" })).status, 401);
        const drained = await fetch(drain, {
          method: "POST",
          headers: { authorization: "Bearer an-e2e-token-0123" },
        });
        assert.equal(drained.status, 200);
        assert.equal(
          text((await exchange(program.port, bytes("n"))).data),
          "",
          "drained: no backend",
        );
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
      }
    });

    it("applies [admin] on reload and logs actions and each reload's outcome once at the default verbosity", async () => {
      const [frontPort = 0, firstPort = 0, secondPort = 0] = await freePorts(3);
      const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.close() });
      const dir = await tempDir();
      const file = join(dir.path, "lb.toml");
      const tokenFile = join(dir.path, "token");
      const [oldToken, newToken] = ["the-first-admin-token", "the-second-admin-token"];
      await writeFile(tokenFile, `${oldToken}\n`, { mode: 0o644 });
      const config = (front: number, admin: number) =>
        configText([backends[0]!.address]).replace("127.0.0.1:0", `127.0.0.1:${front}`) +
        `\n[admin]\nbind_on = "127.0.0.1:${admin}"\ntoken_file = "${tokenFile}"\n`;
      await writeFile(file, config(frontPort, firstPort));
      // No -v: what is asserted below must show at the default verbosity.
      const [command, ...rest] = programCommand(kind);
      const child = spawn(command!, [...rest, "-c", file], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr!.on("data", (chunk) => (stderr += chunk));
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      const count = (pattern: RegExp) => stderr.split("\n").filter((l) => pattern.test(l)).length;
      const answers = async (port: number) => {
        try {
          return (await fetch(`http://127.0.0.1:${port}/api/status`)).status === 200;
        } catch {
          return false;
        }
      };
      const until = async (condition: () => Promise<boolean> | boolean, what: string) => {
        const deadline = Date.now() + 15_000;
        while (!await condition()) {
          if (Date.now() > deadline) assert.fail(`${what} did not happen:\n${stderr}`);
          await sleep(50);
        }
      };
      const reload = async (pattern: RegExp) => {
        const before = count(pattern);
        signalProgram(child, "SIGHUP");
        await until(() => count(pattern) > before, `the line ${pattern}`);
      };
      const drain = (port: number, token: string) =>
        fetch(
          `http://127.0.0.1:${port}/api/frontends/default/backends/${
            encodeURIComponent(backends[0]!.address)
          }/drain`,
          { method: "POST", headers: { authorization: `Bearer ${token}` } },
        );
      try {
        await until(() => answers(firstPort), "the admin listener");
        assert.equal(count(/WARN .*admin.token_file is readable by group or others/), 1, stderr);
        // A page rebound by DNS sends its own name as Host: refused.
        const raw = await connect(firstPort);
        raw.conn.write(bytes("GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n"));
        await eventually(
          () => /^HTTP\/1\.1 403/.test(text(raw.received())),
          "a 403 for evil.example",
        );
        raw.conn.close();
        assert.equal((await drain(firstPort, oldToken)).status, 200);
        await until(() => count(/admin action/) === 1, "the action's line");
        assert.match(
          stderr,
          /INFO mini_balancer::operator: admin action peer=127\.0\.0\.1:\d+ action=drain target=default\/127\.0\.0\.1:\d+ result=draining/,
        );
        // A new token file and address: bind the new one, drop the old, and the old token.
        await writeFile(tokenFile, `${newToken}\n`);
        await writeFile(file, config(frontPort, secondPort));
        await reload(/reloaded config/);
        assert.match(stderr, /INFO mini_balancer::operator: reloaded config file=\S+ via=SIGHUP/);
        assert.equal(await answers(secondPort), true);
        assert.equal((await drain(secondPort, oldToken)).status, 401);
        assert.equal((await drain(secondPort, newToken)).status, 200);
        await until(async () => !await answers(firstPort), "the old admin address to close");
        // Partial: the frontend cannot move onto a taken port; the rest applies.
        await writeFile(file, config(busy.address.port, secondPort));
        await reload(/reload applied except/);
        assert.match(
          stderr,
          new RegExp(
            `WARN mini_balancer::operator: reload applied except: cannot listen on 127\\.0\\.0\\.1:${busy.address.port} for frontend "default": address already in use`,
          ),
        );
        // Rejected: nothing changes.
        await writeFile(file, "[frontend]\nbind_on = 7070\n");
        await reload(/reload rejected/);
        assert.match(stderr, /ERROR mini_balancer::operator: reload rejected: Cannot load config/);
        await writeFile(file, config(frontPort, secondPort));
        const api = await fetch(`http://127.0.0.1:${secondPort}/api/reload`, {
          method: "POST",
          headers: { authorization: `Bearer ${newToken}` },
        });
        assert.equal(api.status, 200);
        await until(() => count(/reloaded config/) === 2, "the API reload's line");
        assert.match(stderr, /reloaded config file=\S+ via=api peer=127\.0\.0\.1:\d+/);
        // Each outcome once: two applied, one partial, one rejected.
        assert.deepEqual(
          [/reloaded config/, /reload applied except/, /reload rejected/, /WARN .*token_file/].map(
            count,
          ),
          [2, 1, 1, 1],
          stderr,
        );
        signalProgram(child, "SIGTERM");
        assert.equal(await exited, 0);
      } finally {
        if (child.exitCode === null && child.signalCode === null) signalProgram(child, "SIGKILL");
        await exited;
        busy.close();
        await dir.cleanup();
      }
    });

    it("says `check` fails on workers where they cannot run (the Node build)", {
      skip: kind !== "node",
    }, async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, "lb.toml");
        await writeFile(
          file,
          `workers = 2\n${configText(["127.0.0.1:8080"])}`.replace(":0", ":7070"),
        );
        const { code, stdout, stderr } = await runProgram(kind, ["check", "-c", file]);
        assert.equal(code, 1, stdout);
        assert.equal(
          stderr.trim(),
          `mini-balancer: Cannot load config "${file}": workers is 2, but workers are not ` +
            "available on node (this build cannot start worker processes): set workers = 1",
        );
      } finally {
        await dir.cleanup();
      }
    });

    it("checks the walkthrough's config with `check` and exits 0 without serving", async () => {
      const { code, stdout } = await runProgram(kind, ["check", "-c", data("seed_example.toml")]);
      assert.equal(code, 0);
      assert.match(stdout, /frontend "default" on 127\.0\.0\.1:7070: round_robin over 2 backends/);
      assert.match(
        stdout,
        /\nconfig "[^"]*seed_example\.toml" is valid: 1 frontend\n?$/,
        "the verdict last",
      );
    });

    it("exits 2 on an unknown option and 0 on --help", async () => {
      const bad = await runProgram(kind, ["--frobnicate"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /Unknown option '--frobnicate'/);
      const help = await runProgram(kind, ["--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /-v, --verbose/);
    });

    it("at the edge: terminates TLS, sends the real client on with PROXY v2, denies at INFO, serves a Unix socket", async () => {
      const dir = await tempDir();
      const [certificate, recorder] = [
        await makeCertificate(dir.path, ["edge.test"]),
        recordingBackend(),
      ];
      const socket = join(dir.path, "lb.sock");
      const program = await startProgram(
        kind,
        `
        [[frontends]]
        name = "tls"
        bind_on = "127.0.0.1:0"
        tls = { cert = "${certificate.certPath}", key = "${certificate.keyPath}" }
        [[frontends.backend]]
        forward_to = "${recorder.address}"
        send_proxy = "v2"

        [[frontends]]
        name = "unix"
        bind_on = "unix:${socket}"
        unix_mode = "0600"
        deny = ["192.0.2.0/24"]
        accept_proxy = true
        [[frontends.backend]]
        forward_to = "${recorder.address}"
        `,
        [],
        [`--allow-write=${dir.path}`],
      );
      try {
        const client = tlsClient(program.port, "edge.test", certificate.cert);
        await client.secure;
        const local = { hostname: "127.0.0.1", port: client.socket.localPort! };
        client.socket.end("over tls");
        await client.ended;
        const header = encodeProxyV2(local, { hostname: "127.0.0.1", port: program.port });
        await eventually(() => recorder.received().length > 0, "the backend to be reached");
        assert.equal(recorder.received()[0], text(header) + "over tls");
        assert.equal((await stat(socket)).mode & 0o777, 0o600);
        const unix = { hostname: "", port: 0, path: socket };
        const denied = encodeProxyV1({ hostname: "192.0.2.1", port: 5 }, {
          hostname: "10.0.0.1",
          port: 6,
        });
        assert.equal(text((await exchange(unix, concat([denied, bytes("no")]))).data), "");
        await eventually(
          () => /refused connection: address denied/.test(program.stderr()),
          "the log",
        );
        assert.match(
          program.stderr(),
          /INFO .*peer_address=192\.0\.2\.1:5\}: .*refused connection: address denied/,
        );
        const allowed = encodeProxyV1({ hostname: "198.51.100.1", port: 5 }, {
          hostname: "10.0.0.1",
          port: 6,
        });
        assert.equal(text((await exchange(unix, concat([allowed, bytes("yes")]))).data), "yes");
        assert.equal(await program.stop("SIGTERM"), 0);
        await assert.rejects(
          stat(socket),
          { code: "ENOENT" },
          "the socket file is removed at stop",
        );
      } finally {
        await program.cleanup();
        recorder.close();
        await dir.cleanup();
      }
    });

    it("at the edge: header_timeout bounds a TLS handshake, and a plain-text client is refused at INFO", async () => {
      const dir = await tempDir();
      const [certificate, recorder] = [
        await makeCertificate(dir.path, ["edge.test"]),
        recordingBackend(),
      ];
      const program = await startProgram(
        kind,
        `
        [frontend]
        bind_on = "127.0.0.1:0"
        max_connections = 20
        header_timeout = "500ms"
        tls = { cert = "${certificate.certPath}", key = "${certificate.keyPath}" }
        [[frontend.backend]]
        forward_to = "${recorder.address}"
        `,
      );
      const sockets: ReturnType<typeof createConnection>[] = [];
      try {
        // 30 clients that never send a byte: more than max_connections.
        const silent = Array.from({ length: 30 }, () => {
          const socket = createConnection({ host: "127.0.0.1", port: program.port });
          sockets.push(socket);
          socket.on("error", () => {});
          socket.resume();
          return {
            opened: new Promise<number>((resolve) =>
              socket.once("connect", () => resolve(performance.now()))
            ),
            closed: new Promise<number>((resolve) =>
              socket.once("close", () => resolve(performance.now()))
            ),
          };
        });
        const opened = await Promise.all(silent.map((s) => s.opened));
        const client = tlsClient(program.port, "edge.test", certificate.cert);
        sockets.push(client.socket);
        await within(client.secure, 3000, "the real client's handshake");
        client.socket.end("real");
        await within(client.ended, 3000, "the real client's echo");
        const servedAt = performance.now();
        assert.equal(client.received(), "real");
        const closedAt = await within(Promise.all(silent.map((s) => s.closed)), 5000, "closes");
        assert.ok(servedAt < Math.min(...closedAt), "served while the silent ones were open");
        const waited = closedAt.map((at, i) => at - opened[i]!);
        const [least, most] = [Math.min(...waited), Math.max(...waited)];
        assert.ok(least >= 480 && most <= 1500, `closed after ${least}..${most} ms`);
        assert.equal(recorder.connections, 1, "a backend connection for the real client only");
        const plain = createConnection({ host: "127.0.0.1", port: program.port });
        sockets.push(plain);
        plain.on("error", () => {});
        plain.resume();
        plain.write("GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n");
        await within(new Promise((resolve) => plain.once("close", resolve)), 3000, "the close");
        await eventually(() => /refused connection: not TLS/.test(program.stderr()), "the log");
        assert.match(program.stderr(), /INFO .*refused connection: not TLS/);
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        for (const socket of sockets) socket.destroy();
        await program.cleanup();
        recorder.close();
        await dir.cleanup();
      }
    });

    it("at the edge: routes TLS by name, picks a certificate by name, and limits a client's rate", async () => {
      const dir = await tempDir();
      const [a, b] = [
        await makeCertificate(dir.path, ["a.test"]),
        await makeCertificate(dir.path, ["b.test"]),
      ];
      const passthrough = echoServer({ tls: { certificates: [a] }, greeting: "passthrough:" });
      const plain = echoServer({ greeting: "plain:" });
      const shared = await freePort();
      const program = await startProgram(
        kind,
        `
        [[frontends]]
        name = "terminating"
        bind_on = "127.0.0.1:0"
        connection_rate_per_client = "3/m"
        ${tlsTables("frontends", [a, b])}
        [[frontends.backend]]
        forward_to = "${plain.address}"

        [[frontends]]
        name = "routed"
        bind_on = "127.0.0.1:${shared}"
        sni = ["a.test"]
        [[frontends.backend]]
        forward_to = "${passthrough.address}"
        `,
      );
      const ask = async (port: number, name: string, ca: string) => {
        const client = tlsClient(port, name, ca);
        try {
          await client.secure;
          const cn = client.socket.getPeerCertificate().subject?.CN;
          client.socket.end("hi");
          await client.ended;
          return `${cn} ${client.received()}`;
        } finally {
          client.socket.destroy();
        }
      };
      try {
        assert.equal(await ask(program.port, "b.test", b.cert), "b.test plain:hi");
        assert.equal(await ask(program.port, "a.test", a.cert), "a.test plain:hi");
        assert.equal(await ask(shared, "a.test", a.cert), "a.test passthrough:hi");
        await assert.rejects(ask(shared, "b.test", a.cert), "no frontend takes b.test there");
        assert.equal(await ask(program.port, "b.test", b.cert), "b.test plain:hi");
        // The fourth in a minute is closed before its TLS handshake.
        await assert.rejects(ask(program.port, "b.test", b.cert), "the fourth in a minute");
        await eventually(() => /client over its connection rate/.test(program.stderr()), "log");
        assert.equal(await program.stop("SIGTERM"), 0);
      } finally {
        await program.cleanup();
        passthrough.close();
        plain.close();
        await dir.cleanup();
      }
    });

    // Node 20's net has no SO_REUSEPORT (reusePort came with Node 22.12):
    // the Node build refuses workers = N at start, with one line.
    if (kind === "node") {
      it("refuses workers = 2 with one line, as Node 20 has no SO_REUSEPORT", async () => {
        const dir = await tempDir();
        try {
          const file = join(dir.path, "workers.toml");
          await writeFile(
            file,
            `workers = 2\n` +
              configText([`127.0.0.1:${closedPort()}`]).replace(":0", `:${await freePort()}`),
          );
          const { code, stderr } = await runProgram(kind, ["-c", file]);
          assert.equal(code, 1);
          assert.match(
            stderr,
            /^mini-balancer: workers = 2 needs SO_REUSEPORT .*runtime \(node\) lacks: set workers = 1\n?$/,
          );
        } finally {
          await dir.cleanup();
        }
      });
    }

    describe("with workers", { skip: kind === "node" }, () => {
      /** Deno's workers need to start deno again, with SO_REUSEPORT. */
      const denoFlags = [`--allow-run=${process.execPath}`, "--unstable-net"];
      const backend = echoServer({ greeting: "w:" });
      after(() => backend.close());

      async function startWorkers(workers: number) {
        const port = await freePort();
        const program = await startProgram(
          kind,
          `workers = ${workers}\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
            `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
          [],
          denoFlags,
        );
        // Every worker listens before the test goes on.
        await eventually(
          () => program.stderr().split("listening for connections").length > workers,
          "every worker to listen",
        );
        const pids = () =>
          [...program.stderr().matchAll(/started worker worker=(\d+) pid=(\d+)/g)].map((m) => ({
            worker: Number(m[1]),
            pid: Number(m[2]),
          }));
        /** Which worker served the client whose local port is `port`, from the log. */
        const workerOf = (clientPort: number) =>
          Number(
            new RegExp(
              `peer_address=127\\.0\\.0\\.1:${clientPort}\\}: .*serving connection .*worker=(\\d)`,
            )
              .exec(program.stderr())?.[1],
          );
        return { program, port, pids, workerOf };
      }

      it("stops at start with one line when a worker's port is taken", async () => {
        const holder = net.listen({
          hostname: "127.0.0.1",
          port: 0,
          onConnection: (c) => c.close(),
        });
        const dir = await tempDir();
        try {
          const file = join(dir.path, "taken.toml");
          const port = holder.address.port;
          await writeFile(
            file,
            `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
              `[[frontend.backend]]\nforward_to = "${backend.address}"\n`,
          );
          const { code, stderr } = await runProgram(kind, ["-c", file], ROOT, denoFlags);
          assert.equal(code, 1);
          assert.equal(
            stderr.trim(),
            `mini-balancer: cannot listen on 127.0.0.1:${port} for frontend "default": address already in use`,
          );
        } finally {
          holder.close();
          await dir.cleanup();
        }
      });

      it("spreads connections over both workers, and stops them both on SIGTERM", async () => {
        const { program, port } = await startWorkers(2);
        try {
          for (let i = 0; i < 40; i++) {
            assert.equal(text((await exchange(port, bytes(`c${i}`))).data), `w:c${i}`);
          }
          await eventually(() => program.stderr().split("serving connection").length > 40, "logs");
          const served = [0, 1].map((w) =>
            program.stderr().split("\n").filter((line) =>
              line.includes("serving connection") && line.endsWith(`worker=${w}`)
            ).length
          );
          assert.ok(served[0]! > 0 && served[1]! > 0, `served per worker: ${served}`);
          // Changing the number of workers needs a restart: a reload refuses it.
          await writeFile(
            program.file,
            (await readFile(program.file, "utf8")).replace("workers = 2", "workers = 3"),
          );
          signalProgram(program.child, "SIGHUP");
          await eventually(
            () => /reload rejected: workers changed from 2 to 3/.test(program.stderr()),
            "the reload to be refused",
          );
          assert.equal(text((await exchange(port, bytes("still"))).data), "w:still");
          assert.equal(await program.stop("SIGTERM"), 0);
          assert.equal(
            program.stderr().split("\n").filter((l) => /INFO .*: stopped worker=/.test(l)).length,
            2,
          );
        } finally {
          await program.cleanup();
        }
      });

      it("replaces a worker killed with SIGKILL, losing only its own connections", async () => {
        const { program, port, pids, workerOf } = await startWorkers(2);
        try {
          const clients = await Promise.all(Array.from({ length: 12 }, () => connect(port)));
          for (const [i, client] of clients.entries()) client.conn.write(bytes(`s${i};`));
          await eventually(
            () => clients.every((client) => client.receivedLength() > 0),
            "every streaming client's first echo",
          );
          const owner = clients.map((client) => workerOf(client.conn.localAddress.port));
          const victim = pids().find((p) => p.worker === 1)!;
          process.kill(victim.pid, "SIGKILL");
          await eventually(
            () => pids().filter((p) => p.worker === 1).length === 2,
            "the killed worker to be replaced",
          );
          assert.match(program.stderr(), /worker exited, restarting it worker=1 .*signal=SIGKILL/);
          for (let i = 0; i < 10; i++) {
            assert.equal(text((await exchange(port, bytes(`n${i}`))).data), `w:n${i}`);
          }
          for (const [i, client] of clients.entries()) {
            if (owner[i] === 1) {
              await within(client.ended, 5000, `client ${i} of the killed worker to end`);
            } else {
              client.conn.write(bytes("more"));
              await eventually(
                () => text(client.received()).endsWith("more"),
                `client ${i} to go on`,
              );
            }
          }
          assert.ok(owner.includes(0) && owner.includes(1), `owners: ${owner}`);
          for (const client of clients) client.conn.close();
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });

      it("answers one admin API for all workers: figures summed, a drain reaching each, logged once, [admin] reloaded", async () => {
        const other = echoServer({ greeting: "o:" });
        const [port = 0, adminPort = 0] = await freePorts(2);
        const token = "a-workers-token-0123";
        const program = await startProgram(
          kind,
          `workers = 2\n[admin]\nbind_on = "127.0.0.1:${adminPort}"\ntoken = "${token}"\n` +
            `[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
            `[[frontend.backend]]\nname = "one"\nforward_to = "${backend.address}"\n` +
            `[[frontend.backend]]\nname = "two"\nforward_to = "${other.address}"\n`,
          [],
          denoFlags,
        );
        const admin = `http://127.0.0.1:${adminPort}`;
        try {
          await eventually(
            () => program.stderr().split("listening for connections").length > 2,
            "both workers to listen",
          );
          for (let i = 0; i < 20; i++) await exchange(port, bytes(`m${i}`));
          await eventually(
            () => program.stderr().split("served connection").length > 20,
            "every connection to be logged as served",
          );
          const metrics = await (await fetch(`${admin}/metrics`)).text();
          assert.match(
            metrics,
            /^mini_balancer_connections_accepted_total\{frontend="default"\} 20$/m,
          );
          assert.match(
            metrics,
            /^mini_balancer_backend_up\{frontend="default",backend="one",state="up"\} 1$/m,
          );
          const status = await (await fetch(`${admin}/api/status`)).json();
          assert.equal(status.workers, 2);
          assert.equal(status.frontends[0].accepted, 20);
          // Each worker takes turns on its own: together they took all 20.
          const totals = status.frontends[0].backends.map((b: { total: number }) => b.total);
          assert.equal(totals.length, 2);
          assert.equal(totals[0] + totals[1], 20);
          const denied = await fetch(`${admin}/api/frontends/default/backends/one/drain`, {
            method: "POST",
          });
          assert.equal(denied.status, 401, "a change without the token");
          // The same routing as a process's listener: the dashboard, 404, 405.
          const page = await fetch(`${admin}/`);
          assert.equal(page.status, 200);
          assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
          await page.text();
          const unknown = await fetch(`${admin}/nope`);
          assert.equal(unknown.status, 404);
          assert.deepEqual(await unknown.json(), { error: "not found" });
          const put = await fetch(`${admin}/metrics`, { method: "PUT" });
          assert.equal(put.status, 405);
          assert.deepEqual(await put.json(), { error: "method not allowed" });
          const drained = await fetch(`${admin}/api/frontends/default/backends/one/drain`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(drained.status, 200);
          const replies = [];
          for (let i = 0; i < 8; i++) replies.push(text((await exchange(port, bytes("d"))).data));
          assert.deepEqual(replies, Array(8).fill("o:d"), "every worker drained backend one");
          const reload = await fetch(`${admin}/api/reload`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(reload.status, 200);
          assert.equal((await reload.json()).success, true);
          // The supervisor logs the action once; its workers' own listeners do not.
          assert.equal(program.stderr().split("action=drain target=default/one").length, 2);
          // Each worker logs its reload's outcome, naming who asked the supervisor.
          await eventually(
            () => program.stderr().split("via=api").length === 3,
            "both workers' reload lines",
          );
          const askers = [...program.stderr().matchAll(/reloaded config .*via=api peer=(\S+)/g)]
            .map((match) => match[1]);
          assert.equal(askers.length, 2);
          assert.equal(askers[0], askers[1], "one client asked both");
          // A reload moves the supervisor's listener and swaps its token.
          const newPort = await freePort();
          const newToken = "a-new-workers-token-0123";
          await writeFile(
            program.file,
            (await readFile(program.file, "utf8"))
              .replace(`127.0.0.1:${adminPort}`, `127.0.0.1:${newPort}`)
              .replace(token, newToken),
          );
          signalProgram(program.child, "SIGHUP");
          const moved = `http://127.0.0.1:${newPort}/api/frontends/default/backends/one/enable`;
          const enable = (bearer: string) =>
            fetch(moved, { method: "POST", headers: { authorization: `Bearer ${bearer}` } })
              .then((answer) => answer.status, () => 0);
          const deadline = Date.now() + 10_000;
          while (await enable(newToken) !== 200) {
            assert.ok(Date.now() < deadline, "the moved listener takes the new token");
            await sleep(50);
          }
          assert.equal(await enable(token), 401, "the old token stops working");
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
          other.close();
        }
      });

      it("probes once for every worker: a dead backend is taken out of each", async () => {
        const dead = `127.0.0.1:${closedPort()}`;
        const port = await freePort();
        const program = await startProgram(
          kind,
          `workers = 2\n[frontend]\nbind_on = "127.0.0.1:${port}"\nretries = 0\n` +
            `[frontend.health]\ninterval = "50ms"\nfall = 1\nrise = 1\n` +
            `[[frontend.backend]]\nname = "live"\nforward_to = "${backend.address}"\n` +
            `[[frontend.backend]]\nname = "dead"\nforward_to = "${dead}"\n`,
          [],
          denoFlags,
        );
        try {
          await eventually(
            () => program.stderr().split("listening for connections").length > 2,
            "both workers to listen",
          );
          await eventually(() => /backend is down/.test(program.stderr()), "the probe to fail");
          await sleep(100); // the change reaches the workers
          // Without retries, a worker that still took the dead backend would fail clients.
          for (let i = 0; i < 16; i++) {
            assert.equal(text((await exchange(port, bytes(`h${i}`))).data), `w:h${i}`);
          }
          const downs = program.stderr().split("\n").filter((line) =>
            line.includes("backend is down")
          );
          assert.equal(downs.length, 1, `one prober, one line:\n${downs.join("\n")}`);
          assert.doesNotMatch(downs[0]!, /worker=/, "the supervisor probes, not a worker");
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });

      it(
        "with discovery, an address that appears is probed by the supervisor and served by each worker",
        {
          skip: dnsSkip,
        },
        async () => {
          const port = await freePort();
          const backendPort = await freePort();
          const first = recordingBackend({ hostname: "127.0.0.2", port: backendPort });
          const dns = await startDns({ hosts: { "web.test": ["127.0.0.2"] } });
          const program = await startProgram(
            kind,
            `workers = 2\nresolver = "${dns.address}"\n` +
              `[frontend]\nbind_on = "127.0.0.1:${port}"\nmin_ttl = "0s"\nmax_ttl = "100ms"\n` +
              `[frontend.health]\ninterval = "50ms"\nrise = 1\n` +
              `[[frontend.backend]]\nname = "web"\nforward_to = "web.test:${backendPort}"\n`,
            [],
            denoFlags,
          );
          const second = recordingBackend({ hostname: "127.0.0.3", port: backendPort });
          try {
            await eventually(
              () => program.stderr().split("listening for connections").length > 2,
              "both workers to listen",
            );
            await dns.setHosts({ "web.test": ["127.0.0.2", "127.0.0.3"] });
            // Up in the supervisor's prober, then told to both workers.
            await eventually(() => /backend is up .*web#127\.0\.0\.3/.test(program.stderr()), "up");
            await sleep(300); // each worker has resolved it and heard it is up
            const before = second.connections;
            for (let i = 0; i < 40; i++) {
              assert.equal(text((await exchange(port, bytes(`d${i}`))).data), `d${i}`);
            }
            const served = program.stderr().split("\n").filter((line) =>
              line.includes("127.0.0.3") && line.includes("opened client connection")
            );
            const workers = new Set(served.map((line) => /worker=(\d)/.exec(line)?.[1]));
            assert.ok(
              second.connections - before >= 10,
              `127.0.0.3 took ${second.connections - before}`,
            );
            assert.equal(workers.size, 2, "both workers send to the new address");
            assert.equal(await program.stop("SIGTERM"), 0);
          } finally {
            await program.cleanup();
            await dns.stop();
            first.close();
            second.close();
          }
        },
      );

      it("reloads on SIGHUP under load with no failed connection", async () => {
        const { program, port } = await startWorkers(2);
        try {
          let running = true;
          let done = 0;
          const failures: string[] = [];
          const load = Array.from({ length: 4 }, async (_, lane) => {
            for (let i = 0; running; i++) {
              const payload = `l${lane}-${i}`;
              const answer = text((await exchange(port, bytes(payload))).data);
              if (answer === `w:${payload}`) done++;
              else failures.push(`${payload} got ${JSON.stringify(answer)}`);
            }
          });
          for (let i = 0; i < 3; i++) {
            await sleep(150);
            signalProgram(program.child, "SIGHUP");
          }
          await eventually(
            () => program.stderr().split("reloaded config").length > 6,
            "both workers to reload three times",
          );
          await sleep(150);
          running = false;
          await Promise.all(load);
          assert.deepEqual(failures, []);
          assert.ok(done > 20, `${done} exchanges`);
          assert.equal(await program.stop("SIGTERM"), 0);
        } finally {
          await program.cleanup();
        }
      });
    });
  });
}
