/**
 * docs/embedding.md's three programs (examples/embedding/), run as a user
 * runs them, importing `mini-balancer` and `mini-balancer/<runtime>` by name:
 * a temporary project maps the names to this repository's sources (Bun: a
 * `node_modules/mini-balancer` whose exports are `.ts` files; Deno: an
 * import map in its `deno.json`; Node: the program bundled by
 * `bun build --target=node` from that project, then run by `node`).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  bytes,
  echoServer,
  exchange,
  findCommand,
  ROOT,
  runChecked,
  signalProgram,
  stopChild,
  tempDir,
  text,
  waitForOutput,
  within,
} from "../_helpers/index.ts";
import { hello } from "../unit/protocol/_samples.ts";

const BUN = join(ROOT, "node_modules/.bin/bun");
const DENO = join(ROOT, "node_modules/.bin/deno");
const EXAMPLES = join(ROOT, "examples/embedding");

/** Whether the select and admit hooks are in this tree (they land with issue 23's hooks). */
const HOOKS = readFileSync(join(ROOT, "src/balancer/balancer.ts"), "utf8").includes("admit?:");
const NO_HOOKS = "the select and admit hooks are not in this tree yet (src/balancer/hooks.ts)";

/** What each package entry is, from the sources: src/lib/<runtime>.ts once it exists. */
function entry(runtime: "bun" | "deno" | "node"): string {
  const lib = join(ROOT, `src/lib/${runtime}.ts`);
  if (existsSync(lib)) return `export * from ${JSON.stringify(lib)};\n`;
  const adapter = join(ROOT, `src/runtime/${runtime}/index.ts`);
  return `export { ${runtime}Net as net } from ${JSON.stringify(adapter)};\n`;
}

let project = "";
let cleanup: () => Promise<unknown> = () => Promise.resolve();
const children: ChildProcess[] = [];
const closers: (() => unknown)[] = [];

before(async () => {
  const dir = await tempDir();
  project = dir.path;
  cleanup = dir.cleanup;
  const pkg = join(project, "node_modules/mini-balancer");
  await mkdir(pkg, { recursive: true });
  await writeFile(
    join(pkg, "package.json"),
    JSON.stringify({
      name: "mini-balancer",
      type: "module",
      exports: {
        ".": "./mod.ts",
        "./bun": "./bun.ts",
        "./deno": "./deno.ts",
        "./node": "./node.ts",
      },
    }),
  );
  await writeFile(
    join(pkg, "mod.ts"),
    `export * from ${JSON.stringify(join(ROOT, "src/mod.ts"))};\n`,
  );
  for (const runtime of ["bun", "deno", "node"] as const) {
    await writeFile(join(pkg, `${runtime}.ts`), entry(runtime));
  }
  await writeFile(join(project, "deno_entry.ts"), entry("deno"));
  // Deno: the repository's imports (valibot, …) from its node_modules, and the package's names.
  const repo = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
  await writeFile(
    join(project, "deno.json"),
    JSON.stringify({
      nodeModulesDir: "manual",
      imports: {
        ...repo.imports,
        // Deno strips no types under node_modules: the names map outside it.
        "mini-balancer": join(ROOT, "src/mod.ts"),
        "mini-balancer/deno": join(project, "deno_entry.ts"),
      },
    }),
  );
  for (const file of ["bun_register.ts", "deno_sni.ts", "node_admit.mjs"]) {
    await copyFile(join(EXAMPLES, file), join(project, file));
  }
});

after(async () => {
  for (const child of children.splice(0)) await stopChild(child);
  for (const close of closers.splice(0)) await close();
  await cleanup();
});

/** Starts a program; resolves with its process and the port it printed after `ready`. */
async function start(command: string, args: string[], env: Record<string, string>, ready: RegExp) {
  const child = spawn(command, args, {
    cwd: project,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const exit = new Promise<number | string | null>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal))
  );
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const deadline = Date.now() + 10_000;
  while (!ready.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`${command} ${args.join(" ")} did not print ${ready}: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const port = Number(ready.exec(output)?.[1]);
  assert.ok(port > 0, `a port in: ${output}`);
  return { child, port, output: () => output, exit };
}

function backend(greeting: string) {
  const server = echoServer({ greeting });
  closers.push(() => server.close());
  return server;
}

/** What a client that sends `data` and ends gets back. */
async function reply(port: number, data = ""): Promise<string> {
  return text((await exchange(port, bytes(data))).data);
}

describe("the embedding guide's programs", () => {
  it("are printed in docs/embedding.md as they are in examples/embedding/", () => {
    const guide = readFileSync(join(ROOT, "docs/embedding.md"), "utf8");
    for (
      const [file, fence] of [["bun_register.ts", "ts"], ["deno_sni.ts", "ts"], [
        "node_admit.mjs",
        "js",
      ]]
    ) {
      const program = readFileSync(join(EXAMPLES, file!), "utf8");
      assert.ok(guide.includes("```" + fence + "\n" + program + "```\n"), `${file} in the guide`);
    }
  });

  it("Bun: registers backends from its own POST /register and balances over them", async () => {
    const [a, b] = [backend("A"), backend("B")];
    const { child, port, output, exit } = await start(
      BUN,
      ["bun_register.ts"],
      { LB_PORT: "0", REGISTRY_PORT: "0" },
      /balancing on 127\.0\.0\.1:(\d+)/,
    );
    const registry = Number(/registering on http:\/\/127\.0\.0\.1:(\d+)/.exec(output())![1]);
    const url = `http://127.0.0.1:${registry}/register`;
    assert.equal(await reply(port), "no backend is registered yet\n");
    const register = (body: unknown) =>
      fetch(url, { method: "POST", body: JSON.stringify(body) }).then(async (r) => ({
        status: r.status,
        body: await r.json(),
      }));
    assert.deepEqual(await register({ name: "a", forward_to: a.address }), {
      status: 201,
      body: { ok: true, name: "a" },
    });
    assert.deepEqual((await register({ name: "b", forward_to: b.address })).status, 201);
    const seen = [await reply(port), await reply(port), await reply(port), await reply(port)];
    assert.deepEqual(seen.toSorted(), ["A", "A", "B", "B"]);
    assert.deepEqual(await register({ name: "c", forward_to: "nope" }), {
      status: 400,
      body: { error: 'backend.forward_to must be host:port: current value is "nope"' },
    });
    assert.equal((await register({ name: "a", forward_to: b.address })).status, 409);
    const removed = await fetch(`${url}/a`, { method: "DELETE" });
    assert.equal(removed.status, 200);
    await removed.body?.cancel();
    assert.deepEqual([await reply(port), await reply(port)], ["B", "B"]);
    assert.match(output(), /admin action peer=library action="add backend" target=app\/a/);
    signalProgram(child, "SIGTERM");
    assert.equal(await within(exit, 5000, "the exit after SIGTERM"), 0);
  });

  it("Deno: routes TLS connections to a tenant's backend by SNI with select", async (t) => {
    if (!HOOKS) return t.skip(NO_HOOKS);
    const [a, b, other] = [backend("A"), backend("B"), backend("D")];
    const { child, port, exit } = await start(
      DENO,
      [
        "run",
        "--no-prompt",
        "--no-lock",
        "--allow-net",
        "--allow-env",
        "--allow-read",
        "deno_sni.ts",
      ],
      { LB_PORT: "0", TENANT_A: a.address, TENANT_B: b.address, DEFAULT: other.address },
      /routing by SNI on 127\.0\.0\.1:(\d+)/,
    );
    const greeting = async (sni: string) =>
      text((await exchange(port, hello({ sni }))).data).slice(0, 1);
    assert.deepEqual(
      [await greeting("a.test"), await greeting("b.test"), await greeting("a.test")],
      ["A", "B", "A"],
    );
    assert.equal(await greeting("c.test"), "D");
    signalProgram(child, "SIGTERM");
    assert.equal(await within(exit, 5000, "the exit after SIGTERM"), 0);
  });

  it("Node: defineConfig, and admit refusing clients during maintenance", async (t) => {
    if (!HOOKS) return t.skip(NO_HOOKS);
    const node = findCommand("node");
    if (node === undefined) return t.skip("node is not installed");
    await runChecked(BUN, [
      "build",
      "--target=node",
      "node_admit.mjs",
      "--outfile",
      "node_admit.bundle.mjs",
    ], { cwd: project, timeout: 30_000 });
    const a = backend("A");
    const { child, port, output, exit } = await start(
      node,
      ["node_admit.bundle.mjs"],
      { LB_PORT: "0", BACKENDS: a.address },
      /balancing on 127\.0\.0\.1:(\d+)/,
    );
    assert.equal(await reply(port, "x"), "Ax");
    signalProgram(child, "SIGUSR2");
    await waitForOutput(child, output, "maintenance on", "node", 5000);
    assert.equal(await reply(port, "x"), "", "refused: closed without a byte");
    signalProgram(child, "SIGUSR2");
    await waitForOutput(child, output, "maintenance off", "node", 5000);
    assert.equal(await reply(port, "x"), "Ax");
    signalProgram(child, "SIGTERM");
    assert.equal(await within(exit, 5000, "the exit after SIGTERM"), 0);
  });
});
