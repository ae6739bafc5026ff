/**
 * The README's and the docs pages' commands as a new user pastes them after
 * the quick start: nothing on PATH but node and npm, nothing in the folder
 * but the clone. Their configs are valid, their links lead somewhere, and
 * docs/configuration.md's key table is the one the schema makes.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { CONFIG_PAGE, renderPage, schemaKeys } from "../../scripts/config-docs.ts";
import { parseConfig } from "../../src/config/load.ts";
import { KEY_DOCS } from "../../src/config/schema_docs.ts";
import { ROOT } from "../_helpers/index.ts";

/** The README and every page of docs/, as paths from the repository's root. */
const PAGES = [
  "README.md",
  ...readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md")).sort()
    .map((name) => `docs/${name}`),
];

/** The text of every page, by path. */
async function pages(): Promise<[string, string][]> {
  return await Promise.all(
    PAGES.map(async (page) => [page, await readFile(join(ROOT, page), "utf8")] as [string, string]),
  );
}

/** The commands in backticks in the table of the README's "Running it" section. */
async function runningCommands(): Promise<string[]> {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const section = readme.split("## Running it")[1]!.split("\n## ")[0]!;
  const rows = section.split("\n").filter((line) => line.startsWith("| ") && line.includes("`"));
  return rows.flatMap((row) =>
    [...row.matchAll(/`([^`]+)`/g)].map((match) => match[1]!)
      .filter((command) =>
        command.includes(" ") && /^(npx|npm|node|dist\/|bun|deno|\.\/)/.test(command)
      )
  );
}

const FRONTEND =
  '[frontend]\nbind_on = "127.0.0.1:0"\n[[frontend.backend]]\nforward_to = "127.0.0.1:1"\n';

/**
 * The text of a ConfigMap's `KEY: |` block scalar: its lines, four spaces in,
 * ending in one newline (YAML's default chomping).
 */
function blockScalar(yaml: string, key: string): string | undefined {
  const lines = yaml.split("\n");
  const start = lines.indexOf(`  ${key}: |`);
  if (start < 0) return undefined;
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line !== "" && !line.startsWith("    ")) break;
    body.push(line.slice(4));
  }
  while (body.at(-1) === "") body.pop();
  return `${body.join("\n")}\n`;
}

describe("README", () => {
  it("runs every command of its Running table through npm or npx, or what npm built", async () => {
    const commands = await runningCommands();
    assert.ok(commands.length >= 7, commands.join("\n"));
    for (const command of commands) {
      // bun and deno live in node_modules/.bin after npm install, not on
      // PATH; node is on it (npm came with it).
      assert.match(
        command,
        /^(npx |npm |dist\/mini-balancer |node dist\/mini-balancer\.mjs )|^deno run /,
        command,
      );
    }
  });

  it("names only config files that are in the repository", async () => {
    const files = (await runningCommands()).flatMap((command) =>
      [...command.matchAll(/-c (\S+)/g)].map((match) => match[1]!)
    );
    assert.ok(files.length >= 4);
    for (const file of files) assert.ok(existsSync(join(ROOT, file)), `${file} is not in the repo`);
  });

  it("shows only valid configs, each example file the same as its config", async () => {
    let count = 0;
    for (const [page, text] of await pages()) {
      const blocks = [
        ...text.matchAll(/(?:\[`(examples\/[^`]+\.toml)`\][^\n]*\n+)?```toml\n([\s\S]*?)```/g),
      ];
      count += blocks.length;
      for (const [, file, toml] of blocks) {
        // A fragment (the [admin] table) is checked beside a frontend.
        const whole = toml!.includes("[frontend") ? toml! : `${toml}\n${FRONTEND}`;
        assert.ok(parseConfig(whole, page).frontends.length > 0);
        if (file === undefined || !file.startsWith("examples/edge/")) continue;
        const example = await readFile(join(ROOT, file), "utf8");
        assert.equal(example.replace(/^#.*\n/, ""), toml, `${file} differs from ${page}`);
      }
    }
    assert.ok(count >= 10, `${count} toml blocks`);
  });

  it("links only to files that are in the repository, from every page", async () => {
    let count = 0;
    for (const [page, text] of await pages()) {
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^https?:/.test(target!)) continue;
        count++;
        const [path, anchor] = target!.split("#");
        const file = path === "" ? join(ROOT, page) : join(ROOT, dirname(page), path!);
        assert.ok(existsSync(file), `${page} links to ${target}, which is not in the repo`);
        if (anchor === undefined) continue;
        // GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to dashes.
        const anchors = [...(await readFile(file, "utf8")).matchAll(/^#+ (.*)$/gm)].map((heading) =>
          heading[1]!.toLowerCase().replace(/[^a-z0-9 _-]/g, "").replaceAll(" ", "-")
        );
        assert.ok(anchors.includes(anchor), `${page} links to ${target}: no such heading`);
      }
    }
    assert.ok(count >= 20, `${count} links`);
  });

  it("runs commands only through npm or npx, on config files that are in the repository, on every page", async () => {
    let count = 0;
    for (const [page, text] of await pages()) {
      // Inline commands a user would paste (prose names a task too, as in
      // "`deno task start` passes SIGINT on"), and every line of sh blocks.
      const inline = [...text.matchAll(/`([^`\n]+)`/g)].map((match) => match[1]!)
        .filter((code) =>
          /^([A-Z_]+=\S+ )*(npx|npm|node|dist\/mini-balancer|deno run) /.test(code)
        );
      const shell = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((match) =>
        match[1]!.split("\n").filter((line) => line !== "" && !line.startsWith("#"))
      );
      for (const line of [...inline, ...shell]) {
        const command = line.replace(/^([A-Z_]+=\S+ )+/, "");
        if (/^(curl|echo) /.test(command)) continue;
        count++;
        assert.match(
          command,
          /^(npx |npm |dist\/mini-balancer |node dist\/mini-balancer\.mjs )|^deno run /,
          `${page}: ${command}`,
        );
        // The config it names, and any file of the repository it runs.
        const files = command.split(/\s+/).filter((word, i, words) =>
          words[i - 1] === "-c" || /^(src|tests|examples|scripts|bench)\/\S+\.(ts|toml)$/.test(word)
        );
        for (const file of files) {
          assert.ok(
            existsSync(join(ROOT, file)),
            `${page}: ${command} names ${file}, not in the repo`,
          );
        }
      }
    }
    assert.ok(count >= 10, `${count} commands`);
  });

  it("prints what docs/operations.md shows for check on examples/multi-frontend.toml", async () => {
    const page = await readFile(join(ROOT, "docs/operations.md"), "utf8");
    const shown =
      /`npx bun run src\/main\.ts check -c examples\/multi-frontend\.toml`:\n\n {2}```\n([\s\S]*?) {2}```/
        .exec(page);
    assert.ok(shown !== null, "operations.md shows no output of check");
    const bun = join(ROOT, "node_modules/.bin/bun");
    const output = await new Promise<string>((resolve, reject) =>
      execFile(
        bun,
        ["run", "src/main.ts", "check", "-c", "examples/multi-frontend.toml"],
        { cwd: ROOT, timeout: 30_000 },
        (error, stdout, stderr) =>
          error ? reject(new Error(stderr || String(error))) : resolve(stdout),
      )
    );
    const printed = output.split("\n");
    // The page shows the first lines, "…" for the ones it leaves out, and the verdict.
    const lines = shown[1]!.split("\n").map((line) => line.slice(2)).filter((line) => line !== "");
    const elided = lines.indexOf("…");
    const head = elided < 0 ? lines : lines.slice(0, elided);
    assert.deepEqual(printed.slice(0, head.length), head, output);
    if (elided >= 0) {
      for (const line of lines.slice(elided + 1)) {
        assert.ok(printed.includes(line), `${line}\n${output}`);
      }
    }
  });

  it("shows in docs/configuration.md the key table the schema makes", async () => {
    const page = await readFile(join(ROOT, CONFIG_PAGE), "utf8");
    assert.equal(
      page,
      renderPage(page),
      `${CONFIG_PAGE} differs from the schema: run npx bun scripts/config-docs.ts`,
    );
  });

  it("documents every config key of the schema, and no key the schema lacks", () => {
    const keys = schemaKeys().map((key) => key.path);
    const documented = Object.keys(KEY_DOCS);
    const frontend = keys.filter((path) => path.startsWith("frontend."));
    assert.ok(frontend.length >= 40, `${frontend.length} frontend keys`);
    for (const path of keys) {
      // A [[frontends]] entry takes every key of [frontend], documented there.
      const shared = path.replace(/^frontends\[N\]\./, "frontend.");
      if (path !== shared && path !== "frontends[N].name") {
        assert.ok(keys.includes(shared), `${path} is not a key of [frontend]`);
        continue;
      }
      assert.ok(path in KEY_DOCS, `${path} has no entry in src/config/schema_docs.ts`);
    }
    for (const path of documented) {
      assert.ok(
        keys.includes(path),
        `src/config/schema_docs.ts documents ${path}, not in the schema`,
      );
    }
    for (const key of schemaKeys()) {
      if (key.default === undefined || KEY_DOCS[key.path] === undefined) continue;
      assert.equal(
        KEY_DOCS[key.path]!.default,
        undefined,
        `${key.path}: its default is the schema's, not schema_docs.ts's`,
      );
    }
  });

  it("ships the Kubernetes example's config in its ConfigMap, valid, on the ports the pods expose", async () => {
    const dir = join(ROOT, "examples/kubernetes");
    const toml = await readFile(join(dir, "mini-balancer.toml"), "utf8");
    const configMap = await readFile(join(dir, "configmap.yaml"), "utf8");
    assert.equal(
      blockScalar(configMap, "mini-balancer.toml"),
      toml,
      "configmap.yaml does not hold examples/kubernetes/mini-balancer.toml",
    );
    const config = parseConfig(toml, "examples/kubernetes/mini-balancer.toml");
    const deployment = await readFile(join(dir, "deployment.yaml"), "utf8");
    assert.match(deployment, /"-c", "\/etc\/mini-balancer\/mini-balancer\.toml"/);
    assert.match(deployment, /mountPath: \/etc\/mini-balancer\n/);
    for (const { port } of [config.frontends[0]!.bindOn, config.admin!.bindOn]) {
      assert.match(deployment, new RegExp(`containerPort: ${port}\\n`), `port ${port}`);
    }
  });

  it("shows a valid config in examples/consul", async () => {
    const file = "examples/consul/mini-balancer.toml";
    const toml = await readFile(join(ROOT, file), "utf8");
    assert.ok(parseConfig(toml, file).frontends.length > 0);
  });
});
