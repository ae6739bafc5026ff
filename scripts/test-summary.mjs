// Reads the output of `npm test` and prints one closing line that counts the
// tests of both runners: "tests: N passed, N failed". bun test ends with
// " N pass" / " N fail"; deno test with "ok | N passed (M steps) | N failed",
// where the steps are the node:test `it` cases inside each `describe`.
import { readFileSync } from "node:fs";

// deno-lint-ignore no-control-regex -- strips the runners' ANSI colours
const log = readFileSync(process.argv[2], "utf8").replace(/\x1b\[[0-9;]*m/g, "");
let passed = 0;
let failed = 0;
for (const match of log.matchAll(/^\s*(\d+) (pass|fail)$/gm)) {
  if (match[2] === "pass") passed += Number(match[1]);
  else failed += Number(match[1]);
}
const count = (text) => {
  const match = /(\d+) (?:passed|failed)(?: \((\d+) steps?\))?/.exec(text);
  return match === null ? 0 : Number(match[2] ?? match[1]);
};
for (const match of log.matchAll(/^(?:ok|FAILED) \| (.*)$/gm)) {
  const [pass = "", fail = ""] = match[1].split("|");
  passed += count(pass);
  failed += count(fail);
}
console.log(`tests: ${passed} passed, ${failed} failed`);
