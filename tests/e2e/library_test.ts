/**
 * The npm package as a user gets it: `npm pack` (which builds dist/lib with
 * `npm run build:lib` first) makes the tarball, `npm install` puts it into a
 * fresh project beside the dependencies the lock file ships (copied from this
 * checkout's node_modules, so the install needs no network), and a small
 * program that imports `mini-balancer` and `mini-balancer/<runtime>` proxies
 * one TCP connection to an echo backend under Bun, Node and Deno. tsc
 * type-checks the programs against the shipped `.d.ts` (and emits the Node
 * one, as Node 20 runs no TypeScript). Runs under Bun; the Deno suite has
 * nothing of its own to add.
 *
 * @module
 */
import assert from "node:assert/strict";
import { cp, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import {
  type CommandResult,
  echoServer,
  findCommand,
  net,
  ROOT,
  runChecked,
  runCommand,
  tempDir,
} from "../_helpers/index.ts";

/** The runtimes the installed package is run on. */
const RUNTIMES = ["bun", "node", "deno"] as const;
type Runtime = typeof RUNTIMES[number];

/** The program each runtime runs: the same text, its own entry. */
function program(runtime: Runtime): string {
  return `import { connect } from "node:net";
import process from "node:process";
import { type Balancer, DiscoveryError, parseConfig, VERSION } from "mini-balancer";
import { net, start } from "mini-balancer/${runtime}";

const backend: string = process.argv[2]!;
const balancer: Balancer = await start(parseConfig(\`
[frontend]
bind_on = "127.0.0.1:0"
[[frontend.backend]]
forward_to = "\${backend}"
\`));
const { port } = balancer.addresses[0]!;
const reply = await new Promise<string>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no echo within 5 s")), 5000);
  const socket = connect(port, "127.0.0.1", () => socket.end("hello from ${runtime}"));
  let text = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => (text += chunk));
  socket.on("error", reject);
  socket.on("close", () => {
    clearTimeout(timer);
    resolve(text);
  });
});
await balancer.stop({ graceMs: 1000 });
console.log(\`\${reply} | \${net.runtime} | \${DiscoveryError.name} | \${VERSION}\`);
`;
}

/** The program's file: Node's is emitted by tsc from a `.mts`, to `.mjs`. */
const source = (runtime: Runtime) => `prog-${runtime}.${runtime === "node" ? "mts" : "ts"}`;

/** A program that misuses the API: the shipped types must reject it. */
const MISUSE = `import { start } from "mini-balancer/node";
await start("[frontend]");
`;

describe("the npm package, installed from its tarball", {
  skip: net.runtime !== "bun"
    ? "the Bun suite packs and runs the package under the three runtimes"
    : undefined,
}, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let project: string;
  let tarball: string;
  let echo: ReturnType<typeof echoServer>;
  let typeCheck: CommandResult;
  const npm = findCommand("npm") ?? "npm";
  const tsc = join(ROOT, "node_modules/typescript/bin/tsc");
  const node = findCommand("node") ?? "node";

  before(async () => {
    dir = await tempDir();
    echo = echoServer();
    const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    await runChecked(npm, ["pack", "--pack-destination", dir.path], {
      cwd: ROOT,
      timeout: 60_000,
    });
    tarball = join(dir.path, `mini-balancer-${version}.tgz`);
    project = join(dir.path, "project");
    // The dependencies the package ships with (the lock file's non-dev
    // packages), copied in first: the install then finds them there.
    const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8"));
    const shipped = Object.entries(lock.packages as Record<string, { dev?: boolean }>)
      .filter(([path, entry]) => path !== "" && entry.dev !== true && !("devOptional" in entry))
      .map(([path]) => path);
    for (const path of shipped) {
      await cp(join(ROOT, path), join(project, path), { recursive: true });
    }
    await writeFile(
      join(project, "package.json"),
      JSON.stringify({ name: "project", private: true, type: "module" }),
    );
    await runChecked(
      npm,
      ["install", "--no-save", "--offline", "--no-audit", "--no-fund", tarball],
      {
        cwd: project,
        timeout: 30_000,
      },
    );
    // Deno takes the bare imports from node_modules, as npm laid it out.
    await writeFile(join(project, "deno.json"), JSON.stringify({ nodeModulesDir: "manual" }));
    for (const runtime of RUNTIMES) {
      await writeFile(join(project, source(runtime)), program(runtime));
    }
    await writeFile(join(project, "misuse.ts"), MISUSE);
    const compilerOptions = {
      module: "nodenext",
      moduleResolution: "nodenext",
      target: "es2022",
      strict: true,
      noUncheckedIndexedAccess: true,
      // The shipped declarations are checked too.
      skipLibCheck: false,
      types: ["node"],
      typeRoots: [join(ROOT, "node_modules/@types")],
    };
    await writeFile(
      join(project, "tsconfig.json"),
      JSON.stringify({ compilerOptions, files: RUNTIMES.map(source) }),
    );
    typeCheck = await runCommand(process.execPath, [tsc, "-p", "tsconfig.json"], {
      cwd: project,
      timeout: 60_000,
    });
  });

  after(async () => {
    echo?.close();
    await dir?.cleanup();
  });

  it("is a tarball of dist/lib, README.md and package.json, of the size the README states", async () => {
    const size = (await stat(tarball)).size;
    assert.ok(size > 100_000 && size < 400_000, `the tarball is ${size} bytes`);
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const claimed = Number(/mini-balancer-[\d.]+\.tgz`,\s+about (\d+) kB/.exec(readme)?.[1]);
    assert.ok(
      Math.abs(size / 1000 - claimed) <= claimed * 0.1,
      `the README says the tarball is about ${claimed} kB, npm pack makes ${size} bytes`,
    );
    const { stdout } = await runChecked("tar", ["tzf", tarball]);
    const files = stdout.trim().split("\n");
    const stray = files.filter((file) =>
      !file.startsWith("package/dist/lib/") &&
      !["package/README.md", "package/package.json"].includes(file)
    );
    assert.deepEqual(stray, []);
    for (const entry of ["mod", "lib/bun", "lib/deno", "lib/node"]) {
      assert.ok(files.includes(`package/dist/lib/${entry}.js`), `${entry}.js missing`);
      assert.ok(files.includes(`package/dist/lib/${entry}.d.ts`), `${entry}.d.ts missing`);
    }
  });

  it("type-checks the programs against the shipped .d.ts, with nodenext and bundler resolution", async () => {
    assert.equal(typeCheck.code, 0, `tsc (nodenext): ${typeCheck.stdout}${typeCheck.stderr}`);
    const bundler = await runCommand(process.execPath, [
      tsc,
      "-p",
      "tsconfig.json",
      "--noEmit",
      "--module",
      "esnext",
      "--moduleResolution",
      "bundler",
      // The declarations were checked in full above; this is about resolution.
      "--skipLibCheck",
    ], { cwd: project, timeout: 60_000 });
    assert.equal(bundler.code, 0, `tsc (bundler): ${bundler.stdout}${bundler.stderr}`);
  });

  it("rejects a program that passes start() a string instead of a config", async () => {
    // The file alone, with the programs' options (tsc takes no file beside -p).
    const misuse = await runCommand(process.execPath, [
      tsc,
      "--noEmit",
      "--strict",
      "--skipLibCheck",
      ...["--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022"],
      ...["--types", "node", "--typeRoots", join(ROOT, "node_modules/@types")],
      "misuse.ts",
    ], { cwd: project, timeout: 60_000 });
    assert.notEqual(misuse.code, 0, 'tsc accepted start("[frontend]")');
    assert.match(misuse.stdout, /misuse\.ts\(2,\d+\): error TS2345/);
  });

  it("has the same version and entries in deno.json (JSR) as in package.json (npm)", async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const deno = JSON.parse(await readFile(join(ROOT, "deno.json"), "utf8"));
    assert.equal(deno.version, pkg.version);
    assert.deepEqual(
      Object.keys(deno.exports),
      Object.keys(pkg.exports).filter((key) => key !== "./package.json"),
    );
    for (const [key, path] of Object.entries<string>(deno.exports)) {
      const built = pkg.exports[key].default.replace("./dist/lib/", "./src/").replace(
        /\.js$/,
        ".ts",
      );
      assert.equal(path, built, `deno.json's ${key} is not the source of package.json's`);
    }
  });

  // Type checking is `deno task check`'s; this checks the entries, slow types
  // and the files JSR would get.
  it("passes deno publish --dry-run, which needs no network", async () => {
    const deno = join(ROOT, "node_modules/.bin/deno");
    const result = await runCommand(deno, ["publish", "--dry-run", "--allow-dirty", "--no-check"], {
      cwd: ROOT,
      timeout: 60_000,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr + result.stdout, /Dry run complete/);
  });

  it("has doc comments deno doc --lint accepts on the entries, and no private type in their API", async () => {
    const deno = join(ROOT, "node_modules/.bin/deno");
    const entries = ["src/mod.ts", "src/lib/bun.ts", "src/lib/deno.ts", "src/lib/node.ts"];
    const result = await runCommand(deno, ["doc", "--lint", ...entries], {
      cwd: ROOT,
      timeout: 60_000,
      env: { NO_COLOR: "1" },
    });
    const problems = [...result.stderr.matchAll(/^error\[([a-z-]+)\][^\n]*\n\s*--> ([^\n]+)/gm)]
      .map(([, rule, at]) => `${rule} at ${at!.replace(`${ROOT}`, "")}`);
    const found = /Found (\d+) documentation lint error/.exec(result.stderr);
    assert.ok(result.code === 0 || found !== null, `deno doc did not run: ${result.stderr}`);
    assert.equal(problems.length, Number(found?.[1] ?? 0), "deno doc's report did not parse");
    assert.deepEqual(problems, []);
  });

  it("has an @example in the doc comment of every symbol the entries export", async () => {
    const deno = join(ROOT, "node_modules/.bin/deno");
    const entries = ["src/mod.ts", "src/lib/bun.ts", "src/lib/deno.ts", "src/lib/node.ts"];
    const result = await runCommand(deno, ["doc", "--json", ...entries], {
      cwd: ROOT,
      timeout: 60_000,
      env: { NO_COLOR: "1" },
    });
    assert.equal(result.code, 0, `deno doc --json failed: ${result.stderr}`);
    interface DocSymbol {
      name: string;
      declarations: { jsDoc?: { tags?: { kind: string }[] } }[];
    }
    const doc = JSON.parse(result.stdout) as { nodes: Record<string, { symbols: DocSymbol[] }> };
    const symbols = Object.entries(doc.nodes).flatMap(([entry, node]) =>
      node.symbols.map((symbol) => ({ entry: entry.slice(entry.lastIndexOf("/src/") + 1), symbol }))
    );
    assert.ok(symbols.length > 80, `deno doc listed only ${symbols.length} exported symbols`);
    const missing = symbols
      .filter(({ symbol }) =>
        !symbol.declarations.some((d) => d.jsDoc?.tags?.some((tag) => tag.kind === "example"))
      )
      .map(({ entry, symbol }) => `${entry}: ${symbol.name}`);
    assert.deepEqual(missing, [], `${missing.length} exported symbols have no @example`);
  });

  for (const runtime of RUNTIMES) {
    it(`proxies a connection through the installed package under ${runtime}`, async () => {
      const command: Record<Runtime, string[]> = {
        bun: [process.execPath, "prog-bun.ts"],
        node: [node, "prog-node.mjs"],
        deno: [
          join(ROOT, "node_modules/.bin/deno"),
          "run",
          "--no-prompt",
          "--allow-net",
          "--allow-read",
          "--allow-env",
          "--allow-sys",
          "prog-deno.ts",
        ],
      };
      const [file, ...args] = command[runtime];
      if (runtime === "node") {
        assert.ok(
          await stat(join(project, "prog-node.mjs")).catch(() => undefined),
          "tsc did not emit prog-node.mjs",
        );
      }
      const started = Date.now();
      const result = await runCommand(file!, [...args, echo.address], {
        cwd: project,
        timeout: 30_000,
      });
      const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
      assert.equal(result.code, 0, `${runtime}: ${result.stderr}`);
      assert.equal(
        result.stdout.trim(),
        `hello from ${runtime} | ${runtime} | DiscoveryError | ${version}`,
      );
      const ms = Date.now() - started;
      assert.ok(ms < 15_000, `${runtime} took ${ms} ms`);
    });
  }
});
