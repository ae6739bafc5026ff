/**
 * Builds the Debian package dist/mini-balancer_VERSION_ARCH.deb from the
 * compiled executable (dist/mini-balancer: `npm run compile`, which
 * `npm run package:deb` runs first), packaging/ (the systemd unit, the
 * control files, the example config) and the man pages scripts/man.ts
 * writes from the docs. Reproducible: every file is dated SOURCE_DATE_EPOCH
 * (the last commit's time when unset) and owned by root
 * (`dpkg-deb --root-owner-group`), so the same tree gives the same bytes.
 *
 * `bun scripts/package-deb.ts [--out DIR]` prints the path of the package.
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import process from "node:process";
import { writeManPages } from "./man.ts";

/** The repository's root. */
const ROOT = join(import.meta.dirname!, "..");

/** The package's name, as in packaging/debian/control. */
const NAME = "mini-balancer";

/** The last commit's time in seconds, the date of every file when SOURCE_DATE_EPOCH is unset. */
function sourceDateEpoch(): number {
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv)) return Number(fromEnv);
  try {
    return Number(
      execFileSync("git", ["log", "-1", "--format=%ct"], { cwd: ROOT, encoding: "utf8" }),
    );
  } catch {
    throw new Error("package-deb: set SOURCE_DATE_EPOCH (no git history to take it from)");
  }
}

/** Copies a file into the package tree, making its folders. */
function put(root: string, path: string, from: string): void {
  const to = join(root, path);
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(from, to);
}

/** Writes text into the package tree, making its folders. */
function write(root: string, path: string, text: string): void {
  const to = join(root, path);
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to, text);
}

/** Compresses a file in place as `gzip -9n` does (no name, no time), as Debian wants man pages and changelogs. */
function gzip(path: string): void {
  execFileSync("gzip", ["-9n", path]);
}

/** Every file and folder under `dir`, folders first, sorted. */
function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => a.name < b.name ? -1 : 1)
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      return entry.isDirectory() ? [path, ...walk(path)] : [path];
    });
}

/**
 * Lays out the package's tree in `root`: the files, then DEBIAN/ with the
 * control file (its Installed-Size counted from the tree) and md5sums.
 *
 * @param root an empty folder
 * @param version the package's version
 * @param arch the Debian architecture
 * @param epoch the date of every file, in seconds
 */
export function layOut(root: string, version: string, arch: string, epoch: number): void {
  const packaging = join(ROOT, "packaging");
  const doc = `usr/share/doc/${NAME}`;
  put(root, `usr/bin/${NAME}`, join(ROOT, "dist", NAME));
  put(root, `lib/systemd/system/${NAME}.service`, join(packaging, `systemd/${NAME}.service`));
  put(root, `etc/${NAME}/${NAME}.toml`, join(packaging, `debian/${NAME}.toml`));
  put(root, `usr/share/lintian/overrides/${NAME}`, join(packaging, "debian/lintian-overrides"));
  put(root, `${doc}/copyright`, join(packaging, "debian/copyright"));
  // A native package (its version has no Debian revision): changelog.gz,
  // not changelog.Debian.gz (Debian Policy 12.7).
  put(root, `${doc}/changelog`, join(packaging, "debian/changelog"));
  gzip(join(root, `${doc}/changelog`));
  put(root, `${doc}/examples/${NAME}.toml`, join(packaging, `debian/${NAME}.toml`));
  for (
    const example of readdirSync(join(ROOT, "examples")).filter((name) => name.endsWith(".toml"))
  ) {
    put(root, `${doc}/examples/${example}`, join(ROOT, "examples", example));
  }
  const [command, config] = writeManPages(join(root, "usr/share/man/tmp"), epoch);
  put(root, `usr/share/man/man1/${NAME}.1`, command!);
  put(root, `usr/share/man/man5/${NAME}.toml.5`, config!);
  rmSync(join(root, "usr/share/man/tmp"), { recursive: true });
  gzip(join(root, `usr/share/man/man1/${NAME}.1`));
  gzip(join(root, `usr/share/man/man5/${NAME}.toml.5`));

  const files = walk(root).filter((path) => statSync(path).isFile());
  const sums = files.map((path) =>
    `${createHash("md5").update(readFileSync(path)).digest("hex")}  ${relative(root, path)}\n`
  );
  // Installed-Size in KiB, as dpkg-gencontrol counts it: each file rounded up.
  const size = files.reduce((sum, path) => sum + Math.ceil(statSync(path).size / 1024), 0);
  const control = readFileSync(join(packaging, "debian/control"), "utf8")
    .replace("@VERSION@", version).replace("@ARCH@", arch).replace("@SIZE@", String(size));
  write(root, "DEBIAN/control", control);
  write(root, "DEBIAN/md5sums", sums.join(""));
  put(root, "DEBIAN/conffiles", join(packaging, "debian/conffiles"));
  for (const script of ["postinst", "postrm"]) {
    put(root, `DEBIAN/${script}`, join(packaging, `debian/${script}`));
  }

  // Modes fixed here, not left to the umask; every date the same.
  for (const path of [root, ...walk(root)]) {
    const name = relative(root, path);
    const executable = statSync(path).isDirectory() || name.startsWith("usr/bin/") ||
      name === "DEBIAN/postinst" || name === "DEBIAN/postrm";
    chmodSync(path, executable ? 0o755 : 0o644);
  }
  for (const path of [...walk(root).reverse(), root]) utimesSync(path, epoch, epoch);
}

/**
 * Builds the package into `outDir`.
 *
 * @param outDir where the .deb goes
 * @returns the package's path
 * @throws {Error} when the executable is missing or dpkg-deb fails
 */
export function buildDeb(outDir: string): string {
  const executable = join(ROOT, "dist", NAME);
  if (!statSync(executable, { throwIfNoEntry: false })?.isFile()) {
    throw new Error(`package-deb: ${executable} is missing: run npm run compile first`);
  }
  const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
  const arch = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
  const changelog = readFileSync(join(ROOT, "packaging/debian/changelog"), "utf8");
  if (!changelog.startsWith(`${NAME} (${version}) `)) {
    throw new Error(
      `package-deb: packaging/debian/changelog's first entry is not for version ${version}: add one`,
    );
  }
  const epoch = sourceDateEpoch();
  const staging = mkdtempSync(join(tmpdir(), "mini-balancer-deb-"));
  try {
    const root = join(staging, "root");
    mkdirSync(root);
    layOut(root, version, arch, epoch);
    mkdirSync(outDir, { recursive: true });
    const deb = join(outDir, `${NAME}_${version}_${arch}.deb`);
    execFileSync(
      "dpkg-deb",
      ["--root-owner-group", "-Zgzip", "-z6", "--build", root, deb],
      {
        env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) },
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
    return deb;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const at = process.argv.indexOf("--out");
  const outDir = at > 0 ? process.argv[at + 1]! : join(ROOT, "dist");
  try {
    console.log(buildDeb(outDir));
  } catch (error) {
    console.error((error as Error).message);
    process.exitCode = 1;
  }
}
