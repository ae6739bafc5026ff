/**
 * Builds the package's library (`npm run build:lib`): dist/lib/, JavaScript
 * for Node 20 and later (ESM, one file per source file, dependencies left as
 * bare imports) with `.d.ts` types beside it, from the package's entries
 * src/mod.ts and src/lib/{bun,deno,node}.ts.
 *
 * tsc does both, so the types are the source's own and a type error stops the
 * build. The Deno adapter is typed against Deno's own declarations
 * (`deno types`, written to a temporary file), not a runtime type package.
 * Declarations keep `.ts` in their relative imports, so they are rewritten to
 * `.js`; then every declaration reachable from an entry is checked to import
 * only files that exist, and the declarations no entry reaches (the adapters'
 * internals) are left out.
 *
 * `bun scripts/build-lib.ts`
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix, relative, sep } from "node:path";
import process from "node:process";

/** The repository's root. */
const ROOT = join(import.meta.dirname!, "..");
/** Where the library goes. */
const OUT = join(ROOT, "dist", "lib");
/** The package's entries, under src/ (and so under dist/lib/). */
const ENTRIES = ["mod.ts", "lib/bun.ts", "lib/deno.ts", "lib/node.ts"];

/** A relative import or re-export in a declaration file (`from "./x.ts"`, `import("./x.ts")`). */
const RELATIVE = /(\bfrom\s*|\bimport\s*\(\s*)(["'])(\.{1,2}\/[^"']+)\2/g;

/** Every file under a folder, as paths relative to it with `/`. */
function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory()
      ? filesUnder(path, base)
      : [relative(base, path).split(sep).join("/")];
  });
}

/** Runs tsc over the entries into {@linkcode OUT}; throws with tsc's report when it fails. */
function compile(): void {
  const tmp = mkdtempSync(join(tmpdir(), "mini-balancer-lib-"));
  try {
    const denoTypes = join(tmp, "lib.deno.d.ts");
    const deno = join(ROOT, "node_modules", ".bin", "deno");
    writeFileSync(denoTypes, execFileSync(deno, ["types"], { maxBuffer: 64 << 20 }));
    const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
    if (!existsSync(tsc)) {
      throw new Error("Cannot build dist/lib: typescript is not installed: run 'npm install'");
    }
    const args = [
      ...ENTRIES.map((entry) => join(ROOT, "src", entry)),
      denoTypes,
      ...["--outDir", OUT, "--rootDir", join(ROOT, "src")],
      ...["--module", "nodenext", "--moduleResolution", "nodenext"],
      // ES2022 syntax runs on Node 20; ES2024 types for ArrayBuffer.transfer,
      // which the code tests for before it calls it.
      ...["--target", "es2022", "--lib", "es2024"],
      ...["--types", "node", "--skipLibCheck", "--strict", "--noUncheckedIndexedAccess"],
      "--declaration",
      "--rewriteRelativeImportExtensions",
      "--noEmitOnError",
    ];
    execFileSync(process.execPath, [tsc, ...args], { cwd: ROOT, stdio: "inherit" });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Rewrites the declarations' relative `.ts` imports to `.js`, keeps those an
 * entry reaches and removes the rest.
 *
 * @throws {Error} When a declaration imports a file the build did not make.
 */
function settleDeclarations(): void {
  const declarations = filesUnder(OUT).filter((file) => file.endsWith(".d.ts"));
  const importsOf = new Map<string, string[]>();
  for (const file of declarations) {
    const imports: string[] = [];
    const text = readFileSync(join(OUT, file), "utf8").replace(
      RELATIVE,
      (_match, head: string, quote: string, specifier: string) => {
        const js = specifier.replace(/\.ts$/, ".js");
        imports.push(posix.normalize(posix.join(posix.dirname(file), js)));
        return `${head}${quote}${js}${quote}`;
      },
    );
    writeFileSync(join(OUT, file), text);
    importsOf.set(file, imports);
  }
  const reached = new Set<string>();
  const missing: string[] = [];
  const visit = (file: string): void => {
    if (reached.has(file)) return;
    reached.add(file);
    for (const js of importsOf.get(file) ?? []) {
      const types = js.replace(/\.js$/, ".d.ts");
      if (!existsSync(join(OUT, js)) || !importsOf.has(types)) missing.push(`${file} -> ${js}`);
      else visit(types);
    }
  };
  for (const entry of ENTRIES) visit(entry.replace(/\.ts$/, ".d.ts"));
  if (missing.length > 0) {
    throw new Error(
      `Cannot build dist/lib: declarations import files not built: ${missing.join(", ")}`,
    );
  }
  for (const file of declarations) if (!reached.has(file)) rmSync(join(OUT, file));
}

rmSync(OUT, { recursive: true, force: true });
compile();
settleDeclarations();
for (const entry of ENTRIES) {
  const js = join(OUT, entry.replace(/\.ts$/, ".js"));
  if (!existsSync(js)) throw new Error(`Cannot build dist/lib: ${relative(ROOT, js)} is missing`);
}
console.log(`dist/lib: ${filesUnder(OUT).length} files`);
