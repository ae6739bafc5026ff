/**
 * Re-renders the markdown of saved results, after a change to the report:
 * `bun bench/render.ts bench/results/DATE-HOST.json` writes the `.md` beside
 * it and prints it. A soak's results (bench/soak.ts) are summarized again
 * from their samples first.
 *
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { renderMarkdown } from "./report.ts";
import type { Results } from "./results.ts";
import { renderSoakMarkdown, type SoakResults, summarizeSoak } from "./soak_report.ts";

const file = process.argv[2];
if (file === undefined || !file.endsWith(".json")) {
  console.error("usage: bun bench/render.ts bench/results/DATE-HOST.json");
  process.exit(2);
}
const saved = JSON.parse(readFileSync(file, "utf8"));
let markdown: string;
if ("runs" in saved) {
  const soak = saved as SoakResults;
  for (const run of soak.runs) run.summary = summarizeSoak(run, soak.settings);
  markdown = renderSoakMarkdown(soak);
} else markdown = renderMarkdown({ remarks: [], ...saved } as Results);
writeFileSync(file.replace(/\.json$/, ".md"), markdown);
console.log(markdown);
