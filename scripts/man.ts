/**
 * Writes the man pages mini-balancer(1) and mini-balancer.toml(5) from the
 * docs, so that they cannot drift from them: the command's page from the
 * README (what it is, the synopsis) and docs/operations.md (options, signals,
 * exit codes, workers, running under systemd with its files and
 * environment), the config file's page from the schema's key docs (the
 * source of docs/configuration.md's key table: scripts/config-docs.ts) and
 * the prose of docs/configuration.md. A small Markdown-to-roff for the
 * subset the docs use (paragraphs, lists, code blocks, tables, inline code,
 * bold, italics, links); no pandoc.
 *
 * `bun scripts/man.ts [DIR]` writes both pages into DIR (dist/man by
 * default).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { BEGIN, END, schemaKeys } from "./config-docs.ts";
import { KEY_DOCS } from "../src/config/schema_docs.ts";
import { VERSION } from "../src/version.ts";

/** The repository's root. */
const ROOT = join(import.meta.dirname!, "..");

/** Characters outside ASCII that the docs use, as roff names them. */
const SPECIAL: Readonly<Record<string, string>> = {
  "…": "\\&...",
  "×": "\\(mu",
  "−": "\\-",
  "–": "\\(en",
  "—": "\\(em",
  "→": "\\(->",
  "“": "\\(lq",
  "”": "\\(rq",
  "‘": "\\(oq",
  "’": "\\(cq",
};

/**
 * Escapes plain text for roff: backslashes, hyphens (as minus signs, so that
 * options and code copy as typed) and characters outside ASCII.
 *
 * @param text text without markup
 * @returns the text as roff prints it
 */
export function escape(text: string): string {
  return text.replaceAll("\\", "\\e").replaceAll("-", "\\-").replace(
    /[^\t\x20-\x7e]/gu,
    (char) =>
      SPECIAL[char] ?? `\\[u${char.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}]`,
  );
}

/** A line that roff would take for a request (a `.` or `'` first) guarded with `\&`. */
function guard(line: string): string {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

/**
 * Inline Markdown as roff: `code` and **bold** in bold, _emphasis_ in
 * italics, a link as its text (and its address when it leaves the docs).
 *
 * @param text one paragraph's or cell's Markdown
 * @returns the roff text, on one line
 */
export function inline(text: string): string {
  const linked = text
    .replace(/!\[[^\]]*\]\([^)]*\)/g, "")
    .replace(
      /\[([^\]]+)\]\(([^)]+)\)/g,
      (_, label: string, url: string) => url.startsWith("http") ? `${label} <${url}>` : label,
    );
  return linked.split(/(`[^`]*`)/).map((part, index) => {
    if (index % 2 === 1) return `\\fB${escape(part.slice(1, -1))}\\fR`;
    return escape(part)
      .replace(/\*\*([^*]+)\*\*/g, "\\fB$1\\fR")
      .replace(/(^|[\s(])_([^_]+)_(?=$|[\s).,:;])/g, "$1\\fI$2\\fR");
  }).join("");
}

/** The cells of a Markdown table row. */
function cells(row: string): string[] {
  return row.trim().replace(/^\|/, "").replace(/\|$/, "").split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replaceAll("\\|", "|"));
}

/**
 * Markdown (the docs' subset) as the body of a man page section.
 *
 * @param markdown the section's Markdown, without its heading
 * @returns roff lines
 */
export function roff(markdown: string): string[] {
  const out: string[] = [];
  const lines = markdown.replace(/<!--[\s\S]*?-->/g, "").split("\n");
  let paragraph: string[] = [];
  let inList = false;
  const flush = () => {
    if (paragraph.length > 0) out.push(guard(inline(paragraph.join(" "))));
    paragraph = [];
  };
  const endList = () => {
    flush();
    if (inList) out.push(".PP");
    inList = false;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const text = line.trim();
    if (text.startsWith("```")) {
      flush();
      const indent = line.length - line.trimStart().length;
      const code: string[] = [];
      for (i++; i < lines.length && !lines[i]!.trim().startsWith("```"); i++) {
        code.push(lines[i]!.slice(indent));
      }
      out.push(".RS 4", ".nf", ...code.map((row) => guard(escape(row))), ".fi", ".RE");
      continue;
    }
    if (text === "") {
      flush();
      if (!inList && out.length > 0 && out.at(-1) !== ".PP") out.push(".PP");
      continue;
    }
    const heading = /^#{3,}\s+(.*)$/.exec(text);
    if (heading !== null) {
      endList();
      out.push(`.SS ${inline(heading[1]!)}`);
      continue;
    }
    if (text.startsWith("|")) {
      endList();
      const rows: string[][] = [];
      for (; i < lines.length && lines[i]!.trim().startsWith("|"); i++) rows.push(cells(lines[i]!));
      i--;
      const [header, , ...body] = rows;
      // A table as a tagged list: its first column as the tag, the others
      // (named by their headers past the second) as the text.
      for (const row of body) {
        const rest = row.slice(1).map((cell, column) =>
          column === 0 ? inline(cell) : `${inline(header![column + 1] ?? "")}: ${inline(cell)}`
        );
        out.push(".TP", guard(inline(row[0]!)), guard(rest.join("; ")));
      }
      out.push(".PP");
      continue;
    }
    const item = /^(?:[-*]|(\d+)\.)\s+(.*)$/.exec(line);
    if (item !== null) {
      flush();
      out.push(item[1] === undefined ? ".IP \\(bu 2" : `.IP ${item[1]}. 4`);
      paragraph.push(item[2]!);
      inList = true;
      continue;
    }
    if (inList && !/^\s/.test(line)) endList();
    paragraph.push(text);
  }
  endList();
  while (out.at(-1) === ".PP") out.pop();
  while (out[0] === ".PP") out.shift();
  return out;
}

/**
 * The body of one section of a Markdown page, without its heading.
 *
 * @param page the page's text
 * @param heading the heading's line, `## Command line`
 * @returns the Markdown up to the next heading of the same level or higher
 * @throws {Error} when the page has no such heading
 */
export function section(page: string, heading: string): string {
  const level = /^#+/.exec(heading)![0].length;
  const lines = page.split("\n");
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`the docs have no section "${heading}"`);
  const body: string[] = [];
  let fenced = false;
  for (const line of lines.slice(start + 1)) {
    if (line.trim().startsWith("```")) fenced = !fenced;
    const match = /^(#+)\s/.exec(line);
    if (!fenced && match !== null && match[1]!.length <= level) break;
    body.push(line);
  }
  return body.join("\n").trim();
}

/** The paragraphs of `markdown` (split at blank lines outside code blocks). */
function paragraphs(markdown: string): string[] {
  return markdown.split(/\n\s*\n/);
}

/** A man page's first lines: the title line and the NAME section. */
function head(title: string, section: number, date: string, name: string, what: string): string[] {
  return [
    `.\\" Generated by scripts/man.ts from the README, docs/ and the config schema: edit those.`,
    `.TH ${title} ${section} ${date} "mini\\-balancer ${VERSION}" "${
      section === 1 ? "User Commands" : "File Formats"
    }"`,
    // No hyphenation and a ragged right edge: option names and paths are
    // copied from a man page, and a hyphen roff added would break them.
    ".nh",
    ".ad l",
    ".SH NAME",
    `${escape(name)} \\- ${escape(what)}`,
  ];
}

/** Reads a file of the repository. */
function read(path: string): string {
  return readFileSync(join(ROOT, path), "utf8");
}

/** A man page section from Markdown. */
function manSection(title: string, markdown: string): string[] {
  return [`.SH ${title}`, ...roff(markdown)];
}

/**
 * The page mini-balancer(1), from the README and docs/operations.md.
 *
 * @param date the page's date, `YYYY-MM-DD`
 * @returns the page's roff
 */
export function commandPage(date: string): string {
  const readme = read("README.md");
  const operations = read("docs/operations.md");
  const intro = paragraphs(readme.split("\n## ")[0]!)[1]!;
  const synopsis = /```\n([\s\S]*?)```/.exec(section(readme, "## Command line"))![1]!;
  const commandLine = section(operations, "## Command line").replace(/^```\n[\s\S]*?```\n/, "");
  const signals = section(operations, "## Signals and reload");
  const exitCodes = paragraphs(signals).filter((text) => text.startsWith("Exit codes:"));
  if (exitCodes.length !== 1) throw new Error("docs/operations.md: no paragraph of exit codes");
  const systemd = section(operations, "## Running under systemd");
  const lines = [
    ...head("MINI\\-BALANCER", 1, date, "mini-balancer", "a layer-4 (TCP and UDP) load balancer"),
    ".SH SYNOPSIS",
    ".nf",
    ...synopsis.trimEnd().split("\n").map((line) => guard(escape(line))),
    ".fi",
    ...manSection("DESCRIPTION", intro),
    ...manSection("OPTIONS", commandLine),
    ...manSection(
      "SIGNALS",
      paragraphs(signals).filter((text) => text !== exitCodes[0]).join("\n\n"),
    ),
    ...manSection("EXIT STATUS", exitCodes[0]!),
    ...manSection("WORKERS", section(operations, "## Several cores: workers")),
    ...manSection("SYSTEMD", systemd.split("\n### ")[0]!),
    ...manSection("ENVIRONMENT", section(operations, "### Environment")),
    ...manSection("FILES", section(operations, "### Files")),
    ".SH SEE ALSO",
    "\\fBmini\\-balancer.toml\\fR(5), \\fBsystemd.service\\fR(5), \\fBsd_notify\\fR(3);",
    "/usr/share/doc/mini\\-balancer/ and the project's docs/ folder",
  ];
  return `${lines.join("\n")}\n`;
}

/** The keys of `[[frontends]]` that `[frontend]` documents. */
function sharedWithFrontend(path: string): boolean {
  return path.startsWith("frontends[N].") && path !== "frontends[N].name";
}

/**
 * Every config key as a tagged paragraph, in the schema's order, with the
 * same type, default, example and meaning as docs/configuration.md's table.
 *
 * @returns roff lines
 * @throws {Error} when a schema key has no entry in KEY_DOCS
 */
export function keyList(): string[] {
  const out: string[] = [];
  for (const key of schemaKeys()) {
    if (sharedWithFrontend(key.path)) continue;
    const doc = KEY_DOCS[key.path];
    if (doc === undefined) throw new Error(`${key.path} has no entry in src/config/schema_docs.ts`);
    const fallback = key.optional ? "none" : "required";
    const defaultText = key.default !== undefined
      ? `\`${JSON.stringify(key.default)}\``
      : doc.default ?? fallback;
    out.push(
      ".TP",
      guard(`\\fB${escape(doc.key ?? key.path)}\\fR (${inline(doc.type)})`),
      guard(inline(`${doc.meaning.replace(/^./, (c) => c.toUpperCase())}.`)),
      ".br",
      guard(inline(`Default: ${defaultText}. Example: ${doc.example}.`)),
    );
  }
  return out;
}

/**
 * The page mini-balancer.toml(5), from the config schema's key docs and the
 * prose of docs/configuration.md.
 *
 * @param date the page's date, `YYYY-MM-DD`
 * @returns the page's roff
 */
export function configPage(date: string): string {
  const page = read("docs/configuration.md");
  const intro = page.split("\n## ")[0]!.split("\n").slice(1).join("\n");
  const keys = section(page, "## Keys");
  const afterTable = keys.slice(keys.indexOf(END) + END.length);
  // The page's words about how its table is made are for the repository's
  // readers; the sentences after them are for everyone.
  const beforeTable = paragraphs(keys.slice(0, keys.indexOf(BEGIN))).map((text) =>
    text.startsWith("The table is generated") ? text.split(/(?<=differ\.)\s+/)[1] ?? "" : text
  ).filter((text) => text !== "");
  const prose = [...page.matchAll(/^## (.+)$/gm)].map((match) => match[1]!)
    .filter((heading) => heading !== "Keys");
  const lines = [
    ...head(
      "MINI\\-BALANCER.TOML",
      5,
      date,
      "mini-balancer.toml",
      "configuration file of mini-balancer",
    ),
    ...manSection("DESCRIPTION", intro),
    ".SH KEYS",
    ...roff(beforeTable.join("\n\n")),
    ...keyList(),
    ".PP",
    ...roff(afterTable),
    ...prose.flatMap((heading) =>
      manSection(escape(heading.toUpperCase()), section(page, `## ${heading}`))
    ),
    ".SH SEE ALSO",
    "\\fBmini\\-balancer\\fR(1)",
  ];
  return `${lines.join("\n")}\n`;
}

/**
 * The pages' date: SOURCE_DATE_EPOCH when set (reproducible builds), else
 * the last commit's, else today.
 *
 * @param epoch the date in seconds, when the caller knows it
 * @returns `YYYY-MM-DD`
 */
export function pageDate(epoch?: number): string {
  let seconds = epoch ?? Number(process.env.SOURCE_DATE_EPOCH);
  if (!Number.isInteger(seconds)) {
    try {
      seconds = Number(
        execFileSync("git", ["log", "-1", "--format=%ct"], { cwd: ROOT, encoding: "utf8" }),
      );
    } catch {
      seconds = Math.floor(Date.now() / 1000);
    }
  }
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

/**
 * Writes both pages into a folder.
 *
 * @param dir the folder, made when missing
 * @param epoch the pages' date in seconds (see {@linkcode pageDate})
 * @returns the paths written
 */
export function writeManPages(dir: string, epoch?: number): string[] {
  const date = pageDate(epoch);
  mkdirSync(dir, { recursive: true });
  const pages = [["mini-balancer.1", commandPage(date)], [
    "mini-balancer.toml.5",
    configPage(date),
  ]];
  return pages.map(([name, text]) => {
    const path = join(dir, name!);
    writeFileSync(path, text!);
    return path;
  });
}

if (import.meta.main) {
  for (const path of writeManPages(process.argv[2] ?? join(ROOT, "dist/man"))) {
    console.log(`wrote ${path}`);
  }
}
