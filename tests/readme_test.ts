/**
 * The README's commands as a new user pastes them after the quick start:
 * nothing on PATH but node and npm, nothing in the folder but the clone.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parseConfig } from "../src/config/load.ts";
import { ROOT } from "./_helpers.ts";

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
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const blocks = [
      ...readme.matchAll(/(?:\[`(examples\/[^`]+\.toml)`\][^\n]*\n+)?```toml\n([\s\S]*?)```/g),
    ];
    assert.ok(blocks.length >= 6, `${blocks.length} toml blocks`);
    for (const [, file, toml] of blocks) {
      // A fragment (the [admin] table) is checked beside a frontend.
      const whole = toml!.includes("[frontend") ? toml! : `${toml}\n${FRONTEND}`;
      assert.ok(parseConfig(whole, "README.md").frontends.length > 0);
      if (file === undefined || !file.startsWith("examples/edge/")) continue;
      const example = await readFile(join(ROOT, file), "utf8");
      assert.equal(example.replace(/^#.*\n/, ""), toml, `${file} differs from the README`);
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
