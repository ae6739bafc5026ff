/**
 * The import graph of src/: every relative import (static, re-export,
 * dynamic) parsed from the text, then two rules checked over it. Imports run
 * one way, from a higher layer to the same or a lower one, in the order
 * entry -> cli -> workers -> admin -> balancer -> discovery -> config ->
 * protocol -> address -> runtime -> log; and no file reaches itself again
 * through its imports (no cycle, file by file, type imports included).
 *
 * @module
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, posix, relative, sep } from "node:path";
import { describe, it } from "node:test";
import { ROOT } from "../../_helpers/index.ts";

const SRC = join(ROOT, "src");

/** The layers, highest first: a file may import its own layer or one below it. */
const LAYERS = [
  "entry",
  "cli",
  "workers",
  "admin",
  "balancer",
  "discovery",
  "config",
  "protocol",
  "address",
  "runtime",
  "log",
] as const;
type Layer = typeof LAYERS[number];

/**
 * Imports that break the order on purpose, each with its reason, as
 * `"from -> to"` (paths under src/). Empty today: keep it so.
 */
const EXCEPTIONS: ReadonlyMap<string, string> = new Map<string, string>([]);

/** The layer a source file (a path under src/, with `/`) belongs to; undefined if none. */
function layerOf(file: string): Layer | undefined {
  if (/^main[^/]*\.ts$/.test(file) || file === "mod.ts" || file.startsWith("main/")) return "entry";
  // The package's per-runtime entries (mini-balancer/bun, …): entry files too.
  if (file.startsWith("lib/")) return "entry";
  if (file === "cli.ts" || file.startsWith("cli/")) return "cli";
  if (file === "supervisor.ts" || file.startsWith("workers/")) return "workers";
  if (file === "log.ts" || file === "errors.ts" || file === "version.ts") return "log";
  const top = file.split("/")[0]!;
  return (LAYERS as readonly string[]).includes(top) && file.includes("/")
    ? top as Layer
    : undefined;
}

/** Every .ts file under a folder, as paths relative to it with `/`. */
async function sourceFiles(dir: string, base = dir): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(entries.map((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path, base);
    return Promise.resolve(entry.name.endsWith(".ts") ? [relative(base, path)] : []);
  }));
  return files.flat().map((file) => file.split(sep).join("/"));
}

const IMPORT = /(?:\bfrom|\bimport)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g;

/** The relative imports of one file's text, resolved to paths under src/. */
function importsOf(file: string, source: string): string[] {
  // Doc comments may show imports; only code counts.
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  return [...code.matchAll(IMPORT)].map((match) =>
    posix.normalize(posix.join(posix.dirname(file), match[1]!))
  );
}

/** The import graph of src/: file -> the files it imports. */
async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const file of await sourceFiles(SRC)) {
    graph.set(file, importsOf(file, await readFile(join(SRC, file), "utf8")));
  }
  return graph;
}

/** Each import that goes up the layers and is not a named exception, as `from -> to`. */
function upward(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const found: string[] = [];
  for (const [file, imports] of graph) {
    const from = LAYERS.indexOf(layerOf(file)!);
    for (const target of imports) {
      const edge = `${file} -> ${target}`;
      if (LAYERS.indexOf(layerOf(target)!) < from && !EXCEPTIONS.has(edge)) found.push(edge);
    }
  }
  return found;
}

/** Each cycle met by a depth-first walk, as the files around it (first file repeated last). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const found: string[] = [];
  const done = new Set<string>();
  const path: string[] = [];
  const visit = (file: string): void => {
    path.push(file);
    for (const target of graph.get(file) ?? []) {
      const at = path.indexOf(target);
      if (at >= 0) found.push([...path.slice(at), target].join(" -> "));
      else if (!done.has(target)) visit(target);
    }
    path.pop();
    done.add(file);
  };
  for (const file of [...graph.keys()].sort()) if (!done.has(file)) visit(file);
  return found;
}

describe("the import graph of src/", () => {
  it("places every source file in a layer and imports only files that exist", async () => {
    const graph = await importGraph();
    assert.ok(graph.size >= 60, `only ${graph.size} files found under src/`);
    const unplaced = [...graph.keys()].filter((file) => layerOf(file) === undefined);
    assert.deepEqual(unplaced, [], "files with no layer: add them to layerOf");
    const missing = [...graph].flatMap(([file, imports]) =>
      imports.filter((target) => !graph.has(target)).map((target) => `${file} -> ${target}`)
    );
    assert.deepEqual(missing, []);
    assert.ok(graph.get("balancer/balancer.ts")!.includes("balancer/frontend.ts"));
  });

  it("has no import from a lower layer to a higher one", async () => {
    assert.deepEqual(upward(await importGraph()), []);
  });

  it("has no cycle, file by file", async () => {
    assert.deepEqual(cycles(await importGraph()), []);
  });

  it("keeps address/, protocol/ and runtime/ free of config, balancer, admin, cli and workers", async () => {
    const graph = await importGraph();
    const high = /^(config|balancer|admin|cli|workers)\/|^(cli|supervisor)\.ts$/;
    const offenders = [...graph].flatMap(([file, imports]) =>
      /^(address|protocol|runtime)\//.test(file)
        ? imports.filter((target) => high.test(target)).map((target) => `${file} -> ${target}`)
        : []
    );
    assert.deepEqual(offenders, []);
  });

  it("would catch an upward import, a cycle and an import in any form", () => {
    const bad = new Map([
      ["address/address.ts", ["config/config.ts"]],
      ["config/config.ts", ["address/address.ts"]],
      ["runtime/types.ts", ["log.ts"]],
    ]);
    assert.deepEqual(upward(bad), ["address/address.ts -> config/config.ts"]);
    assert.deepEqual(cycles(bad), [
      "address/address.ts -> config/config.ts -> address/address.ts",
    ]);
    assert.deepEqual(cycles(new Map([["a/x.ts", ["a/x.ts"]]])), ["a/x.ts -> a/x.ts"]);
    const source = [
      'import type { A } from "../config/config.ts";',
      'export { b } from "./b.ts";',
      "import {\n  c,\n} from '../c.ts';",
      'const d = await import("../balancer/d.ts");',
      '/** import { e } from "./e.ts"; */',
      '// import { f } from "./f.ts";',
      'import { g } from "node:net";',
    ].join("\n");
    assert.deepEqual(importsOf("protocol/x.ts", source), [
      "config/config.ts",
      "protocol/b.ts",
      "c.ts",
      "balancer/d.ts",
    ]);
    assert.equal(layerOf("supervisor.ts"), "workers");
    assert.equal(layerOf("cli/serve.ts"), "cli");
    assert.equal(layerOf("lib/node.ts"), "entry");
    assert.equal(layerOf("errors.ts"), "log");
    assert.equal(layerOf("stray.ts"), undefined);
  });
});
