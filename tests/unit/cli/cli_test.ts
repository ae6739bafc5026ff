import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { resetSync } from "@logtape/logtape";
import type { LogRecord } from "@logtape/logtape";
import { main } from "../../../src/cli/main.ts";
import { parseCli } from "../../../src/cli/options.ts";
import { formatText, levelForVerbosity } from "../../../src/log.ts";
import { VERSION } from "../../../src/version.ts";
import { closedPort, configText, net, ROOT, tempDir } from "../../_helpers/index.ts";

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    net,
    onShutdownSignal: () => () => {},
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("parseCli", () => {
  it("defaults to mini-balancer.toml and warnings only", () => {
    const options = parseCli([]);
    // Spelt out, not the code's constant: the file name is what users rely on.
    assert.equal(options.config, "mini-balancer.toml");
    assert.equal(options.verbosity, 0);
    assert.equal(options.logFormat, "text");
    assert.equal(options.graceMs, 5000);
  });

  it("counts repeated -v, grouped or not", () => {
    assert.equal(parseCli(["-v"]).verbosity, 1);
    assert.equal(parseCli(["-vv"]).verbosity, 2);
    assert.equal(parseCli(["-v", "-v", "-v"]).verbosity, 3);
    assert.equal(parseCli(["--verbose", "-vvv"]).verbosity, 4);
  });

  it("takes the config file from -c and --config", () => {
    assert.equal(parseCli(["-c", "a.toml"]).config, "a.toml");
    assert.equal(parseCli(["--config=b.toml"]).config, "b.toml");
    assert.equal(parseCli(["-v", "-c", "c.toml"]).config, "c.toml");
  });

  it("rejects unknown options, positionals and bad values", () => {
    assert.throws(() => parseCli(["--nope"]), /Unknown option '--nope'/);
    assert.throws(() => parseCli(["extra"]));
    assert.throws(() => parseCli(["--log-format", "xml"]), /--log-format must be text or json/);
    assert.throws(() => parseCli(["--grace-period", "soon"]), /--grace-period must be a duration/);
    assert.throws(
      () => parseCli(["--grace-period", "5"]),
      /^TypeError: --grace-period must be a duration such as "250ms", "5s" or "1m": current value is "5"$/,
    );
    assert.throws(
      () => parseCli(["--grace-period", "600h"]),
      /^TypeError: --grace-period must be at most 2147483647ms \(about 24.8 days\): current value is "600h"$/,
    );
  });
});

describe("levelForVerbosity", () => {
  it("maps none, -v, -vv and -vvv to warning, info, debug and trace", () => {
    assert.deepEqual([0, 1, 2, 3, 9].map(levelForVerbosity), [
      "warning",
      "info",
      "debug",
      "trace",
      "trace",
    ]);
  });
});

describe("main", () => {
  // main() configures logging; leave none behind for the other test files.
  after(() => resetSync());

  it("checks a config without binding it: a summary and exit 0", async () => {
    // The frontend's port is taken: check must not try to bind it.
    const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.reset() });
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      await writeFile(
        file,
        `[[frontends]]\nname = "web"\nbind_on = "127.0.0.1:${busy.address.port}"\n` +
          `algorithm = "least_connections"\n` +
          `[[frontends.backend]]\nname = "app-1"\nforward_to = "127.0.0.1:8081"\nweight = 2\n` +
          `[[frontends.backend]]\nforward_to = "127.0.0.1:8082"\nbackup = true\n` +
          '[admin]\nbind_on = "127.0.0.1:9901"\n',
      );
      const { code, out, err } = await run(["check", "-c", file]);
      assert.equal(code, 0, err);
      assert.equal(
        out,
        [
          `frontend "web" on 127.0.0.1:${busy.address.port}: least_connections over 2 backends`,
          "  app-1 = 127.0.0.1:8081 (weight 2)",
          "  127.0.0.1:8082 (weight 1, backup)",
          "admin listener on 127.0.0.1:9901, no token: read-only",
          `config "${file}" is valid: 1 frontend`,
        ].join("\n"),
      );
    } finally {
      busy.close();
      await dir.cleanup();
    }
  });

  it("exits 1 with one line when the admin token file cannot be read, stopping what it started", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      await writeFile(
        file,
        configText(["127.0.0.1:9"]) +
          `\n[admin]\nbind_on = "127.0.0.1:0"\ntoken_file = "${dir.path}/missing-token"\n`,
      );
      const { code, err } = await run(["-c", file]);
      assert.equal(code, 1);
      assert.equal(err.split("\n").length, 1, err);
      // A config error naming the key, not a listen error.
      assert.equal(
        err,
        `mini-balancer: Cannot load config "${file}": admin.token_file file not found: ` +
          `current value is "${dir.path}/missing-token"`,
      );
    } finally {
      await dir.cleanup();
    }
  });

  it("reads the admin token from token_file and checks its length", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      await writeFile(join(dir.path, "token"), "short\n");
      await writeFile(
        file,
        configText(["127.0.0.1:9"]) +
          `\n[admin]\nbind_on = "127.0.0.1:0"\ntoken_file = "${dir.path}/token"\n`,
      );
      const { code, err } = await run(["-c", file]);
      assert.equal(code, 1);
      assert.equal(
        err,
        `mini-balancer: Cannot load config "${file}": admin.token_file must hold a token of at ` +
          `least 16 characters on its first line: it has 5: current value is "${dir.path}/token"`,
      );
    } finally {
      await dir.cleanup();
    }
  });

  it("check fails, in one line, on everything a start would fail on that binding is not needed for", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      const frontend = configText(["127.0.0.1:9"]).replace("127.0.0.1:0", "127.0.0.1:7070");
      const checked = async (admin: string, extra = "") => {
        await writeFile(file, `${extra}${frontend}\n[admin]\n${admin}\n`);
        const { code, out, err } = await run(["check", "-c", file]);
        assert.equal(code, 1, `exit 1 for ${admin}: ${out}`);
        assert.equal(err.split("\n").length, 1, err);
        return err.replace(`mini-balancer: Cannot load config "${file}": `, "");
      };
      const tokenFile = join(dir.path, "token");
      assert.equal(
        await checked(`token_file = "${tokenFile}"`),
        `admin.token_file file not found: current value is "${tokenFile}"`,
      );
      await writeFile(tokenFile, "too-short\n");
      assert.equal(
        await checked(`token_file = "${tokenFile}"`),
        "admin.token_file must hold a token of at least 16 characters on its first line: " +
          `it has 9: current value is "${tokenFile}"`,
      );
      assert.equal(
        await checked(`token_file = "${dir.path}"`),
        `admin.token_file is a directory, not a file: current value is "${dir.path}"`,
      );
      assert.equal(
        await checked('bind_on = "0.0.0.0:7070"'),
        'admin.bind_on clashes with frontend ("default" on 127.0.0.1:7070): "0.0.0.0:7070"',
      );
      assert.equal(
        await checked('bind_on = "256.1.1.1:9901"'),
        "admin.bind_on must be host:port: the host is not a valid IPv4 address: " +
          'current value is "256.1.1.1:9901"',
      );
      assert.equal(
        await checked('bind_on = "nowhere.invalid:9901"'),
        "admin.bind_on cannot be bound: nowhere.invalid does not resolve: " +
          'current value is "nowhere.invalid:9901"',
      );
      // This caller, like the Node build, cannot start worker processes.
      assert.equal(
        await checked('bind_on = "127.0.0.1:9901"', "workers = 2\n"),
        `workers is 2, but workers are not available on ${net.runtime} (this build cannot ` +
          "start worker processes): set workers = 1",
      );
      await writeFile(file, frontend.replace("127.0.0.1:7070", "nowhere.invalid:7070"));
      const { code, err } = await run(["check", "-c", file]);
      assert.equal(code, 1);
      assert.equal(
        err,
        `mini-balancer: Cannot load config "${file}": frontend "default": bind_on cannot be ` +
          'bound: nowhere.invalid does not resolve: current value is "nowhere.invalid:7070"',
      );
    } finally {
      await dir.cleanup();
    }
  });

  it("check names a token file others may read, and the allowed hosts, never the token", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      const tokenFile = join(dir.path, "token");
      await writeFile(tokenFile, "a-secret-admin-token-value\n", { mode: 0o640 });
      await writeFile(
        file,
        configText(["127.0.0.1:9"]) + `\n[admin]\nbind_on = "127.0.0.1:9901"\n` +
          `token_file = "${tokenFile}"\nallowed_hosts = ["lb.internal"]\n`,
      );
      const { code, out, err } = await run(["check", "-c", file]);
      assert.equal(code, 0, err);
      // The admin line closes the summary; the verdict comes after it.
      assert.equal(
        out.split("\n").at(-2),
        `admin listener on 127.0.0.1:9901, the token in ${tokenFile} (readable by group or ` +
          "others: chmod 600 it), also for Host lb.internal",
      );
      assert.doesNotMatch(out + err, /a-secret-admin-token-value/);
    } finally {
      await dir.cleanup();
    }
  });

  it("checks a bad config: the one-line error and exit 1", async () => {
    const file = `${ROOT}tests/testdata/zero_weight.toml`;
    const { code, out, err } = await run(["check", "-c", file]);
    assert.equal(code, 1);
    assert.equal(out, "");
    assert.equal(
      err,
      `mini-balancer: Cannot load config "${file}": frontend.backend[1].weight must be a whole ` +
        "number from 1 to 256: current value is 0",
    );
  });

  it("checks a config whose only backend's name cannot be resolved: the one error line, no verdict, exit 1", async () => {
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      // Nothing listens on the resolver's port: the name cannot be asked.
      await writeFile(
        file,
        `resolver = "127.0.0.1:${closedPort()}"\n[frontend]\nbind_on = "127.0.0.1:0"\n` +
          `[[frontend.backend]]\nforward_to = "web.test:8080"\n`,
      );
      const { code, out, err } = await run(["check", "-c", file]);
      assert.equal(code, 1);
      assert.equal(out, "", "nothing on stdout, least of all that the config is valid");
      assert.match(
        err,
        /^mini-balancer: frontend "default" has no backend: web.test did not resolve: cannot reach DNS server 127\.0\.0\.1:\d+: /,
      );
      assert.equal(err.split("\n").length, 1);
    } finally {
      await dir.cleanup();
    }
  });

  it("takes check only as the first word", () => {
    assert.equal(parseCli(["check"]).command, "check");
    assert.equal(parseCli([]).command, "serve");
    assert.throws(() => parseCli(["-v", "check"]));
  });

  it("prints help and exits 0", async () => {
    const { code, out } = await run(["--help"]);
    assert.equal(code, 0);
    assert.match(out, /Usage: mini-balancer \[check\] \[OPTIONS\]/);
    assert.match(out, /-c, --config FILE/);
  });

  it("prints the version of package.json", async () => {
    const pkg = JSON.parse(await readFile(`${ROOT}package.json`, "utf8"));
    const { code, out } = await run(["--version"]);
    assert.equal(code, 0);
    assert.equal(VERSION, pkg.version);
    assert.equal(out, `mini-balancer ${pkg.version}`);
  });

  it("pins the same dependency versions for Deno as package.json", async () => {
    const pkg = JSON.parse(await readFile(`${ROOT}package.json`, "utf8"));
    const deno = JSON.parse(await readFile(`${ROOT}deno.json`, "utf8"));
    for (const [name, version] of Object.entries(pkg.dependencies)) {
      assert.equal(deno.imports[name], `npm:${name}@${version}`);
    }
  });

  it("exits 2 with a hint on an unknown option", async () => {
    const { code, err } = await run(["--bogus"]);
    assert.equal(code, 2);
    assert.match(err, /^mini-balancer: Unknown option '--bogus'/);
    assert.match(err, /Try 'mini-balancer --help'/);
  });

  it("exits 1 with one line when the config file is missing", async () => {
    const { code, err } = await run(["-c", "/nonexistent/lb.toml"]);
    assert.equal(code, 1);
    assert.equal(err, 'mini-balancer: Cannot load config "/nonexistent/lb.toml": file not found');
  });

  it("prints a config error as one JSON line under --log-format json", async () => {
    const { code, err } = await run(["--log-format", "json", "-c", "/nonexistent/lb.toml"]);
    assert.equal(code, 1);
    assert.equal(err.split("\n").length, 1, err);
    const line = JSON.parse(err);
    assert.match(line["@timestamp"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual({ ...line, "@timestamp": "" }, {
      "@timestamp": "",
      level: "ERROR",
      message: 'Cannot load config "/nonexistent/lb.toml": file not found',
      logger: "mini_balancer.main",
      properties: { file: "/nonexistent/lb.toml", path: "", problem: "file not found" },
    });
  });

  it("prints a listen error as one JSON line under --log-format json", async () => {
    const busy = net.listen({ hostname: "127.0.0.1", port: 0, onConnection: (c) => c.reset() });
    const dir = await tempDir();
    try {
      const file = join(dir.path, "lb.toml");
      await writeFile(file, configText(["127.0.0.1:9"]).replace(":0", `:${busy.address.port}`));
      const { code, err } = await run(["--log-format", "json", "-c", file]);
      assert.equal(code, 1);
      assert.equal(err.split("\n").length, 1, err);
      const line = JSON.parse(err);
      assert.equal(line.level, "ERROR");
      assert.equal(line.logger, "mini_balancer.main");
      assert.match(line.message, new RegExp(`127\\.0\\.0\\.1:${busy.address.port}`));
      assert.deepEqual(line.properties, {
        address: `127.0.0.1:${busy.address.port}`,
        frontend: "default",
      });
    } finally {
      busy.close();
      await dir.cleanup();
    }
  });
});

describe("formatText", () => {
  const record = (properties: Record<string, unknown>, message: string): LogRecord => ({
    category: ["mini_balancer", "frontend"],
    level: "info",
    message: [message],
    rawMessage: message,
    timestamp: Date.UTC(2021, 4, 8, 14, 19, 1, 488),
    properties,
  });

  it("renders the context as the original's spans", () => {
    const line = formatText(record({
      local_address: "127.0.0.1:7070",
      peer_address: "127.0.0.1:49438",
      target_address: "127.0.0.1:8080",
    }, "opened client connection"));
    assert.equal(
      line,
      "2021-05-08T14:19:01.488Z  INFO frontend{local_address=127.0.0.1:7070}:" +
        "handle_connection{peer_address=127.0.0.1:49438}:through{target_address=127.0.0.1:8080}: " +
        "mini_balancer::frontend: opened client connection\n",
    );
  });

  it("appends other fields as key=value, quoting text with spaces", () => {
    const line = formatText(record({
      peer_address: "[::1]:5000",
      reason: "connection refused",
      bytes_from_client: 12,
    }, "failed to serve connection"));
    assert.match(
      line,
      /handle_connection\{peer_address=\[::1\]:5000\}: mini_balancer::frontend: failed to serve connection reason="connection refused" bytes_from_client=12\n$/,
    );
  });
});
