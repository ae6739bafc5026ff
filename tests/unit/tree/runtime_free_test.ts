import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "../../_helpers/index.ts";

const SRC = join(ROOT, "src");
/** Files allowed to touch a runtime: the adapters and the entry files. */
const ALLOWED = /^(runtime\/|main[^/]*\.ts$)/;
const RUNTIME_NAMES = /\b(Bun|Deno)\s*[.[]|\bBun\b|\bDeno\b/;
const NODE_ONLY = /from\s+"node:(net|tls|dgram|child_process|cluster|http|https|http2)"/;

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(entries.map((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(path) : Promise.resolve([path]);
  }));
  return files.flat().filter((file) => file.endsWith(".ts"));
}

function codeOf(source: string): string {
  // Doc comments may mention the runtimes; code may not.
  return source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

describe("the core", () => {
  it("names neither Bun nor Deno outside src/runtime and the entry files", async () => {
    const offenders: string[] = [];
    for (const file of await sourceFiles(SRC)) {
      const name = relative(SRC, file);
      if (ALLOWED.test(name)) continue;
      const code = codeOf(await readFile(file, "utf8"));
      if (RUNTIME_NAMES.test(code) || NODE_ONLY.test(code)) offenders.push(name);
    }
    assert.deepEqual(offenders, []);
  });

  it("is checked on every source file", async () => {
    const files = (await sourceFiles(SRC)).map((file) => relative(SRC, file));
    assert.ok(files.includes("balancer/session/session.ts"));
    assert.ok(files.filter((file) => !ALLOWED.test(file)).length >= 10);
  });

  it("opens every source file with a module doc that says what it owns", async () => {
    const missing: string[] = [];
    for (const file of await sourceFiles(SRC)) {
      const source = await readFile(file, "utf8");
      const doc = /^\/\*\*[\s\S]*?\*\//.exec(source)?.[0] ?? "";
      if (!doc.includes("@module")) missing.push(relative(SRC, file));
    }
    assert.deepEqual(missing, []);
  });

  it("would catch a runtime global in core code", () => {
    assert.ok(RUNTIME_NAMES.test(codeOf("const s = Bun.listen({});")));
    assert.ok(RUNTIME_NAMES.test(codeOf("await Deno.connect({ port: 1 });")));
    assert.ok(NODE_ONLY.test('import { Socket } from "node:net";'));
    assert.ok(!RUNTIME_NAMES.test(codeOf("/** Works on Bun and Deno. */\nconst x = 1;")));
  });
});
