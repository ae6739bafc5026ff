/**
 * Re-renders the markdown of saved results, after a change to the report:
 * `bun bench/render.ts bench/results/DATE-HOST.json` writes the `.md` beside
 * it and prints it.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { renderMarkdown } from "./report.ts";
import type { Results } from "./results.ts";

const file = process.argv[2];
if (file === undefined || !file.endsWith(".json")) {
  console.error("usage: bun bench/render.ts bench/results/DATE-HOST.json");
  process.exit(2);
}
const results = { remarks: [], ...JSON.parse(readFileSync(file, "utf8")) } as Results;
const markdown = renderMarkdown(results);
writeFileSync(file.replace(/\.json$/, ".md"), markdown);
console.log(markdown);
