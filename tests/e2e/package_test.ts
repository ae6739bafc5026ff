/**
 * The Debian package as CI checks it: `scripts/package-deb.ts` builds it from
 * the compiled executable (rebuilt only when the sources are newer), lintian
 * finds no error in it, `dpkg -x` unpacks it into a temporary root, the
 * unpacked program's `check` accepts the shipped config, both man pages
 * render without a warning, `systemd-analyze verify` accepts the unit, and
 * two builds give the same bytes. Runs under Bun, which builds the
 * executable the package holds; the Deno suite has nothing of its own to add.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";
import process from "node:process";
import { after, before, describe, it } from "node:test";
import { schemaKeys } from "../../scripts/config-docs.ts";
import { buildDeb } from "../../scripts/package-deb.ts";
import { KEY_DOCS } from "../../src/config/schema_docs.ts";
import { findCommand, net, ROOT, runCommand, skipReason, tempDir } from "../_helpers/index.ts";
import { build } from "./_setup.ts";

/** Why the package cannot be built here, if it cannot. */
const noDpkg = skipReason("package_test", { "dpkg-deb": findCommand("dpkg-deb") });

/** A tool the test needs, or a failure that names it. */
function need(name: string): string {
  const path = findCommand(name);
  if (path === undefined) {
    assert.fail(`${name} is not installed: run 'sudo bash scripts/ensure-tools.sh ${name}'`);
  }
  return path;
}

/** A free TCP port below 1024 on 127.0.0.1 (as root, which may bind one). */
async function freeLowPort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 600 + Math.floor(Math.random() * 400);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error("no free port between 600 and 999 on 127.0.0.1");
}

/**
 * Runs the unpacked program as `nobody` under setpriv with no new
 * privileges and at most CAP_NET_BIND_SERVICE (as the unit's DynamicUser=,
 * AmbientCapabilities= and CapabilityBoundingSet= start it), until it logs
 * that it listens and has served a connection, or exits; then stops it
 * with SIGTERM.
 *
 * @returns what it printed and its exit code
 */
function runUnprivileged(
  setpriv: string,
  program: string,
  config: string,
  port: number,
  caps: boolean,
): Promise<{ output: string; listened: boolean; code: number | null; stopMs: number }> {
  const capArgs = caps
    ? [
      "--inh-caps=-all,+net_bind_service",
      "--ambient-caps=+net_bind_service",
      "--bounding-set=-all,+net_bind_service",
    ]
    : ["--inh-caps=-all", "--bounding-set=-all"];
  const child = spawn(setpriv, [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...capArgs,
    "--no-new-privs",
    program,
    "-v",
    "-c",
    config,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let listened = false;
  let stoppedAt = 0;
  return new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the program neither listened nor exited within 10 s: ${output}`));
    }, 10_000);
    const onData = (chunk: Buffer) => {
      output += chunk;
      if (!listened && output.includes("listening for connections")) {
        listened = true;
        // A connection served to its end (its backend refuses: closed)
        // shows it serves, and that it has passed its start: SIGTERM any
        // earlier finds no handler yet (the start logs "listening" before
        // it registers one).
        const client = connect(port, "127.0.0.1");
        client.on("error", () => {});
        client.once("close", () => {
          stoppedAt = performance.now();
          child.kill("SIGTERM");
        });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("error", reject);
    child.once("close", (code) => {
      clearTimeout(deadline);
      resolve({ output, listened, code, stopMs: listened ? performance.now() - stoppedAt : 0 });
    });
  });
}

/** The SHA-256 of a file, in hex. */
async function sha256(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

describe("the Debian package", {
  skip: net.runtime !== "bun"
    ? "the Bun suite builds and checks the package (it holds the Bun-compiled executable)"
    : noDpkg,
}, () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let deb: string;
  let root: string;

  before(async () => {
    dir = await tempDir();
    await build("executable");
    deb = buildDeb(join(dir.path, "first"));
    root = join(dir.path, "root");
    const unpacked = await runCommand("dpkg", ["-x", deb, root], { timeout: 60_000 });
    assert.equal(unpacked.code, 0, unpacked.stderr);
  }, { timeout: 180_000 });
  after(() => dir?.cleanup());

  it("is named after package.json's version and dpkg's architecture", async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8"));
    const arch = (await runCommand("dpkg", ["--print-architecture"])).stdout.trim();
    assert.equal(deb, join(dir.path, "first", `mini-balancer_${version}_${arch}.deb`));
    const info = await runCommand("dpkg-deb", [
      "--field",
      deb,
      "Package",
      "Version",
      "Architecture",
    ]);
    assert.equal(
      info.stdout,
      `Package: mini-balancer\nVersion: ${version}\nArchitecture: ${arch}\n`,
    );
  });

  it("has no lintian errors", { timeout: 120_000 }, async () => {
    const lintian = need("lintian");
    const result = await runCommand(lintian, ["--fail-on", "error", deb], { timeout: 110_000 });
    const errors = result.stdout.split("\n").filter((line) => line.startsWith("E:"));
    assert.deepEqual(errors, [], result.stdout);
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
  });

  it("holds its files owned by root, the config as a conffile", async () => {
    const listing = (await runCommand("dpkg-deb", ["--contents", deb])).stdout.split("\n")
      .filter((line) => line !== "");
    const paths = listing.map((line) => line.split(/\s+/).at(-1));
    for (
      const path of [
        "./usr/bin/mini-balancer",
        "./lib/systemd/system/mini-balancer.service",
        "./etc/mini-balancer/mini-balancer.toml",
        "./usr/share/man/man1/mini-balancer.1.gz",
        "./usr/share/man/man5/mini-balancer.toml.5.gz",
        "./usr/share/doc/mini-balancer/copyright",
        "./usr/share/doc/mini-balancer/changelog.gz",
        "./usr/share/doc/mini-balancer/examples/mini-balancer.toml",
        "./usr/share/lintian/overrides/mini-balancer",
      ]
    ) assert.ok(paths.includes(path), `${path} is missing:\n${listing.join("\n")}`);
    assert.deepEqual(listing.filter((line) => !line.includes(" root/root ")), []);
    assert.ok(
      listing.some((line) => line.startsWith("-rwxr-xr-x") && line.endsWith("/mini-balancer")),
    );
    const conffiles = await runCommand("dpkg-deb", ["--info", deb, "conffiles"]);
    assert.equal(conffiles.stdout, "/etc/mini-balancer/mini-balancer.toml\n");
  });

  it("unpacks a program whose check accepts the shipped config", async () => {
    const result = await runCommand(
      join(root, "usr/bin/mini-balancer"),
      ["check", "-c", join(root, "etc/mini-balancer/mini-balancer.toml")],
      { timeout: 20_000 },
    );
    assert.equal(result.code, 0, `${result.stdout}${result.stderr}`);
    assert.match(
      result.stdout,
      /frontend "default" on 127\.0\.0\.1:8080: round_robin over 1 backend/,
    );
    assert.match(result.stdout, /is valid: 1 frontend\n$/);
  });

  it("has man pages that render without warnings and name every config key", async () => {
    const man = need("man");
    const rendered: Record<string, string> = {};
    for (const page of ["man1/mini-balancer.1.gz", "man5/mini-balancer.toml.5.gz"]) {
      const result = await runCommand(
        man,
        ["--warnings", "-l", join(root, "usr/share/man", page)],
        {
          env: { MANWIDTH: "80", MAN_KEEP_FORMATTING: "" },
          timeout: 20_000,
        },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, "", `${page} renders with warnings`);
      rendered[page] = result.stdout;
      // groff's every warning (man -l asks for a few kinds only).
      const groff = findCommand("groff");
      if (groff === undefined) continue;
      const plain = join(dir.path, page.split("/")[1]!.replace(/\.gz$/, ""));
      await writeFile(plain, gunzipSync(await readFile(join(root, "usr/share/man", page))));
      const strict = await runCommand(groff, ["-ww", "-man", "-z", plain], { timeout: 20_000 });
      assert.equal(strict.stderr, "", `${page}: groff -ww warns`);
      assert.equal(strict.code, 0);
    }
    const command = rendered["man1/mini-balancer.1.gz"]!;
    for (
      const section of ["SYNOPSIS", "OPTIONS", "SIGNALS", "EXIT STATUS", "ENVIRONMENT", "FILES"]
    ) {
      assert.match(command, new RegExp(`^${section}$`, "m"), `mini-balancer(1) lacks ${section}`);
    }
    assert.match(command, /--grace-period/);
    assert.match(command, /NOTIFY_SOCKET/);
    const config = rendered["man5/mini-balancer.toml.5.gz"]!;
    // Every key of docs/configuration.md's table, from the same schema.
    for (const key of schemaKeys()) {
      if (key.path.startsWith("frontends[N].") && key.path !== "frontends[N].name") continue;
      const shown = KEY_DOCS[key.path]!.key ?? key.path;
      assert.ok(config.includes(`\n       ${shown} (`), `mini-balancer.toml(5) lacks ${shown}`);
    }
    assert.match(config, /^ALGORITHMS$/m);
    // Backslashes and hyphens come out as the docs write them.
    assert.ok(config.includes('"\\u00XX"'), "mini-balancer.toml(5) mangles a backslash");
    assert.match(
      command,
      /^ {7}mini-balancer \[-c\|--config FILE\] \[-v\.\.\.\] \[--log-format text\|json\]/m,
    );
  });

  it("has a unit that systemd-analyze verify accepts", async () => {
    const analyze = need("systemd-analyze");
    const unit = await readFile(join(root, "lib/systemd/system/mini-balancer.service"), "utf8");
    for (
      const setting of [
        "Type=notify",
        "ExecStart=/usr/bin/mini-balancer -c /etc/mini-balancer/mini-balancer.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "WatchdogSec=30s",
        "LimitNOFILE=65536",
      ]
    ) assert.match(unit, new RegExp(`^${setting.replaceAll("$", "\\$")}$`, "m"), setting);
    // Bun's JIT needs memory that is writable and executable.
    assert.doesNotMatch(unit, /^MemoryDenyWriteExecute/m);
    // verify wants ExecStart's program to exist: the unpacked one.
    const copy = join(dir.path, "mini-balancer.service");
    await writeFile(
      copy,
      unit.replaceAll("/usr/bin/mini-balancer", join(root, "usr/bin/mini-balancer")),
    );
    const result = await runCommand(analyze, ["verify", copy], {
      // Documentation=man:… pages are looked up here, in the package.
      env: { MANPATH: join(root, "usr/share/man"), SYSTEMD_LOG_LEVEL: "notice" },
      timeout: 30_000,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
  });

  it(
    "runs as an unprivileged user that may bind a port below 1024 and nothing else, as the unit runs it",
    {
      skip: process.getuid?.() === 0 ? false : "needs root to change users and capabilities",
    },
    async () => {
      const setpriv = need("setpriv");
      const port = await freeLowPort();
      const shipped = await readFile(join(root, "etc/mini-balancer/mini-balancer.toml"), "utf8");
      assert.match(shipped, /bind_on = "127\.0\.0\.1:8080"/);
      const config = join(dir.path, "low-port.toml");
      await writeFile(
        config,
        shipped.replace("127.0.0.1:8080", `127.0.0.1:${port}`).replace(
          "127.0.0.1:9000",
          "127.0.0.1:1", // nothing listens there: each connection is refused and closed
        ),
      );
      // nobody must reach the config and the program.
      await chmod(dir.path, 0o755);
      await chmod(config, 0o644);
      const program = join(root, "usr/bin/mini-balancer");

      const allowed = await runUnprivileged(setpriv, program, config, port, true);
      assert.ok(allowed.listened, allowed.output);
      assert.equal(allowed.code, 0, allowed.output);
      assert.ok(allowed.stopMs < 3000, `stopped ${allowed.stopMs} ms after SIGTERM`);
      // Without the capability the same start is refused: the capability is what binds.
      const refused = await runUnprivileged(setpriv, program, config, port, false);
      assert.equal(refused.listened, false, refused.output);
      assert.equal(refused.code, 1, refused.output);
      assert.match(
        refused.output,
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} .*permission denied`),
      );
    },
  );

  it("is reproducible: a second build gives the same bytes", { timeout: 120_000 }, async () => {
    const second = buildDeb(join(dir.path, "second"));
    assert.equal(await sha256(second), await sha256(deb));
  });
});
