/**
 * How an operator starts, stops and installs mini-balancer: the Deno entry
 * refusing `workers` without the flags they need, before it starts any;
 * `npm start` (under `bun test`) and `deno task start`, also through `npx`
 * (under `deno test`), passing SIGTERM and SIGINT on to the balancer; the
 * install scripts npm must be allowed to run; and the README's statements
 * that come from the build and the scripts.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, describe, it } from "node:test";
import {
  bytes,
  connect,
  echoServer,
  eventually,
  freePort,
  net,
  ROOT,
  sleep,
  tempDir,
  text,
  within,
} from "../_helpers/index.ts";

/** A config with one frontend on `port` in front of `backend`, with `extra` at the top. */
function config(port: number, backend: string, extra = ""): string {
  return `${extra}[frontend]\nbind_on = "127.0.0.1:${port}"\n` +
    `[[frontend.backend]]\nforward_to = "${backend}"\n`;
}

/** A process of a process group, as /proc tells it. */
interface GroupMember {
  pid: number;
  command: string;
}

/**
 * The live processes of process group `pgid` (zombies left out), as `ps`
 * lists them (Deno reads /proc only with every permission).
 */
function processGroup(pgid: number): GroupMember[] {
  const list = execFileSync("ps", ["-eo", "pid=,pgid=,stat=,args="], { encoding: "utf8" });
  return list.split("\n").flatMap((line) => {
    const [pid, group, state, ...args] = line.trim().split(/\s+/);
    if (Number(group) !== pgid || state === undefined || state.startsWith("Z")) return [];
    return [{ pid: Number(pid), command: args.join(" ") }];
  });
}

/** Sends `signal` to each process of a group, as a terminal's Ctrl-C reaches them all. */
function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  for (const { pid } of processGroup(pgid)) {
    try {
      process.kill(pid, signal);
    } catch {
      // It exited meanwhile.
    }
  }
}

/** Runs `command` to its end, killed after `ms`; gives its exit code, output and duration. */
function runFor(command: string[], ms: number) {
  const started = performance.now();
  const child = spawn(command[0]!, command.slice(1), {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  return new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>(
    (resolve) =>
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr, ms: performance.now() - started });
      }),
  );
}

describe("the Deno entry with workers", { skip: net.runtime !== "deno" }, () => {
  const deno = process.execPath;
  const cases = [
    {
      missing: "--allow-run",
      flags: ["--unstable-net"],
      advice: `--allow-run=${deno} (to start the workers)`,
    },
    {
      missing: "--unstable-net",
      flags: [`--allow-run=${deno}`],
      advice: "--unstable-net (for SO_REUSEPORT)",
    },
  ];
  for (const { missing, flags, advice } of cases) {
    it(`stops at start with one line naming ${missing} when run without it`, async () => {
      const backend = echoServer();
      const dir = await tempDir();
      try {
        const file = join(dir.path, "workers.toml");
        await writeFile(file, config(await freePort(), backend.address, "workers = 2\n"));
        const command = [deno, "run", "--no-prompt", "--allow-net", "--allow-read", ...flags];
        // -v: a worker started would log "started worker".
        const run = await runFor(
          [...command, join(ROOT, "src/main_deno.ts"), "-v", "-c", file],
          8_000,
        );
        assert.equal(
          run.stderr,
          `mini-balancer: workers = 2 cannot start: run deno with ${advice}, ` +
            "or set workers = 1\n",
        );
        assert.equal(run.code, 1);
        assert.ok(run.ms < 5_000, `it took ${Math.round(run.ms)} ms to stop`);
        assert.equal(run.stdout, "");
      } finally {
        backend.close();
        await dir.cleanup();
      }
    });
  }
});

/** How each runner starts the balancer through a package manager's script. */
const starters: { name: string; command: string[] }[] = net.runtime === "bun"
  ? [{ name: "npm start", command: ["npm", "start", "--"] }]
  : net.runtime === "deno"
  ? [
    { name: "npx deno task start", command: ["npx", "deno", "task", "start"] },
    { name: "deno task start", command: [process.execPath, "task", "start"] },
  ]
  : [];

/**
 * Starts the balancer through `command` in a process group of its own (as
 * a shell's job), and waits until it listens on `port`.
 */
async function startThrough(command: string[], port: number, backend: string) {
  const dir = await tempDir();
  const file = join(dir.path, "mini-balancer.toml");
  await writeFile(file, config(port, backend));
  const child = spawn(
    command[0]!,
    [...command.slice(1), "-v", "-c", file, "--grace-period", "10s"],
    {
      cwd: ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const pgid = child.pid!;
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  let done: { code: number | null; signal: string | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve(done = { code, signal }))
  );
  const cleanup = async () => {
    signalGroup(pgid, "SIGKILL");
    await dir.cleanup();
  };
  try {
    await eventually(
      () => /listening for connections/.test(output) || done !== undefined,
      `${command.join(" ")} to listen`,
      30_000,
    );
    assert.equal(done, undefined, `${command.join(" ")} ended at start:\n${output}`);
    // The balancer is one of the group's processes: the group's end is its end.
    const group = processGroup(pgid);
    assert.ok(
      group.some((member) => /src\/main(_deno)?\.ts /.test(member.command)),
      `no balancer in the group: ${group.map((member) => member.command).join("; ")}`,
    );
  } catch (error) {
    await cleanup();
    throw error;
  }
  return {
    pgid,
    output: () => output,
    exited,
    hasExited: () => done !== undefined,
    cleanup,
  };
}

/** Waits until no process of group `pgid` is left; fails naming the ones that are. */
async function groupGone(pgid: number, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  for (let left = processGroup(pgid); left.length > 0; left = processGroup(pgid)) {
    if (performance.now() > deadline) {
      const names = left.map((member) => `${member.pid} ${member.command}`).join("\n");
      assert.fail(`${what}: still running ${ms} ms after the signal:\n${names}`);
    }
    await sleep(20);
  }
}

/** Whether a connect to the loopback `port` is refused. */
function refused(port: number): Promise<boolean> {
  return net.connect({ hostname: "127.0.0.1", port }).then(
    (conn) => (conn.reset(), false),
    () => true,
  );
}

for (const { name, command } of starters) {
  describe(name, () => {
    const backend = echoServer();
    after(() => backend.close());

    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      it(`passes ${signal} sent to it on to the balancer, which stops and leaves nothing running`, async () => {
        const port = await freePort();
        const started = await startThrough(command, port, backend.address);
        try {
          process.kill(started.pgid, signal);
          const end = await within(started.exited, 5_000, `${name} to exit on ${signal}`);
          await groupGone(started.pgid, 5_000, `${name} on ${signal}`);
          assert.ok(await refused(port), "the balancer's port still accepts connections");
          assert.deepEqual(end, { code: 0, signal: null }, started.output());
          // The balancer stopped as documented: one graceful stop, exit 0.
          assert.match(started.output(), /shutting down grace_ms=10000[^]*\bstopped\b/);
          assert.doesNotMatch(started.output(), /second signal/);
        } finally {
          await started.cleanup();
        }
      });
    }

    it("takes a terminal's Ctrl-C for one signal: open connections get their grace period", async () => {
      const port = await freePort();
      const started = await startThrough(command, port, backend.address);
      try {
        const client = await connect(port);
        client.conn.write(bytes("before "));
        await eventually(() => client.receivedLength() === 7, "the echo before the signal");
        // The terminal signals every process of its foreground group, and
        // the one started passes its own copy on as well.
        signalGroup(started.pgid, "SIGINT");
        await eventually(() => /shutting down/.test(started.output()), "the balancer to stop");
        await sleep(500); // past the time a copy of the signal takes
        client.conn.write(bytes("after"));
        await eventually(() => client.receivedLength() === 12, "the echo after the signal", 3_000);
        assert.equal(text(client.received()), "before after");
        assert.doesNotMatch(started.output(), /second signal/);
        assert.equal(started.hasExited(), false, "it stopped before the connection ended");
        const closedAt = performance.now();
        client.conn.end();
        await client.closed;
        const end = await within(started.exited, 5_000, `${name} to exit once the client left`);
        assert.ok(performance.now() - closedAt < 5_000);
        assert.deepEqual(end, { code: 0, signal: null }, started.output());
        await groupGone(started.pgid, 5_000, `${name} after Ctrl-C`);
      } finally {
        await started.cleanup();
      }
    });
  });
}

/** The README's text. */
const readme = () => readFile(join(ROOT, "README.md"), "utf8");

describe("npm install", () => {
  it("may run the install scripts of every dependency that has one (allowScripts)", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const allowed = (name: string) =>
      Object.entries(pkg.allowScripts ?? {}).some(([key, value]) =>
        value === true && (key === name || key.startsWith(`${name}@`))
      );
    // What a fresh install runs: the lock file's packages with a script…
    const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8"));
    const locked = Object.entries(lock.packages as Record<string, { hasInstallScript?: boolean }>)
      .filter(([, entry]) => entry.hasInstallScript === true)
      .map(([path]) => path.slice(path.lastIndexOf("node_modules/") + "node_modules/".length));
    // …and what is installed now.
    const modules = join(ROOT, "node_modules");
    const names = readdirSync(modules).flatMap((name) =>
      name.startsWith("@") ? readdirSync(join(modules, name)).map((n) => `${name}/${n}`) : [name]
    );
    const installed = names.filter((name) => {
      const file = join(modules, name, "package.json");
      if (!existsSync(file)) return false;
      const scripts = JSON.parse(readFileSync(file, "utf8")).scripts ?? {};
      return ["preinstall", "install", "postinstall"].some((script) => script in scripts);
    });
    assert.ok(locked.includes("bun") && locked.includes("deno"), locked.join(", "));
    for (const name of new Set([...locked, ...installed])) {
      assert.ok(allowed(name), `package.json's allowScripts does not cover ${name}`);
    }
  });
});

describe("README", () => {
  /** The builds whose size the Running it table states, each as its npm script makes it. */
  const builds = [
    {
      what: "the Node bundle",
      stated: /one file of about (\d+) KB; Node 20/,
      unit: { name: "KB", bytes: 1000 },
      args: ["--target=node", "src/main_node.ts"], // npm run build:node
    },
    {
      what: "the standalone executable",
      stated: /one file of about (\d+) MiB, Bun's runtime included/,
      unit: { name: "MiB", bytes: 1024 * 1024 },
      args: ["--compile", "--minify", "src/main.ts"], // npm run compile
    },
  ];
  for (const { what, stated, unit, args } of builds) {
    it(`states the size of ${what} as the build makes it, within 10 %`, async () => {
      const claim = stated.exec(await readme());
      assert.ok(claim !== null, `the Running it table states no size for ${what}`);
      const dir = await tempDir();
      try {
        // Built into a folder of our own, not over dist/.
        const outfile = join(dir.path, "mini-balancer");
        const bun = join(ROOT, "node_modules/.bin/bun");
        const build = await runFor([bun, "build", ...args, "--outfile", outfile], 60_000);
        assert.equal(build.code, 0, build.stderr);
        const size = (await stat(outfile)).size / unit.bytes;
        const claimed = Number(claim[1]);
        assert.ok(
          Math.abs(size - claimed) <= claimed * 0.1,
          `the README says ${what} is about ${claimed} ${unit.name}, ` +
            `the build makes ${Math.round(size)} ${unit.name}`,
        );
      } finally {
        await dir.cleanup();
      }
    });
  }

  it("names every apt package the tests install", async () => {
    const script = await readFile(join(ROOT, "scripts/ensure-tools.sh"), "utf8");
    const table = /declare -A package=\(([^)]*)\)/.exec(script)![1]!;
    const packageOf = new Map(
      [...table.matchAll(/\[(\S+)\]=(\S+)/g)].map((match) => [match[1]!, match[2]!]),
    );
    // The tools the pretest script and CI ask ensure-tools.sh for.
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const ci = await readFile(join(ROOT, ".ci/run"), "utf8");
    const asked = [pkg.scripts.pretest as string, ...ci.split("\n")]
      .filter((line) => line.includes("scripts/ensure-tools.sh"))
      .flatMap((line) => line.split("scripts/ensure-tools.sh")[1]!.trim().split(/\s+/));
    assert.ok(asked.length > 0, "no tools asked of ensure-tools.sh");
    const development = (await readme()).split("\n## Development")[1]!.split("\n## ")[0]!;
    for (const tool of new Set(asked)) {
      const name = packageOf.get(tool) ?? tool;
      assert.ok(
        development.includes(`\`${name}\``),
        `the README's Development section does not name the apt package ${name} (for ${tool})`,
      );
    }
  });
});
