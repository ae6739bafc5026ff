import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { main } from "../../../src/cli/main.ts";
import { parseCli } from "../../../src/cli/options.ts";
import { quickToml } from "../../../src/cli/quick.ts";
import { parseConfig } from "../../../src/config/load.ts";
import { net, ROOT, tempDir } from "../../_helpers/index.ts";

/** Runs `main` as `check` or `--print-config` do: nothing is served. */
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

const QUICK = ["--listen", "127.0.0.1:8080", "--to", "10.0.0.2:80", "--to", "10.0.0.1:80"];

describe("parseCli in quick mode", () => {
  it("keeps the order of --to for round robin", () => {
    const cli = parseCli(QUICK);
    const frontend = cli.quick!.config.frontends[0]!;
    assert.equal(frontend.bindOn.port, 8080);
    assert.equal(frontend.algorithm, "round_robin");
    assert.deepEqual(frontend.backends.map((b) => b.address), ["10.0.0.2:80", "10.0.0.1:80"]);
    assert.equal(cli.config, "(command line)");
    assert.equal(cli.command, "serve");
  });

  it("takes IPv6, udp:, --algorithm and --admin as a file's keys would", () => {
    const cli = parseCli([
      "check",
      "--listen",
      "udp:[::1]:5353",
      "--to",
      "[::1]:53",
      "--to",
      "127.0.0.1:53",
      "--algorithm",
      "source_hash",
      "--admin",
      "[::1]:9100",
    ]);
    assert.equal(cli.command, "check");
    const { frontends, admin } = cli.quick!.config;
    assert.equal(frontends.length, 1);
    assert.equal(frontends[0]!.transport, "udp");
    assert.equal(frontends[0]!.bindOn.hostname, "::1");
    assert.equal(frontends[0]!.algorithm, "source_hash");
    assert.deepEqual(frontends[0]!.backends.map((b) => b.address), ["[::1]:53", "127.0.0.1:53"]);
    assert.equal(admin!.bindOn.hostname, "::1");
    assert.equal(admin!.bindOn.port, 9100);
    assert.equal(admin!.token, undefined);
  });

  it("leaves the default file alone without --listen", () => {
    const cli = parseCli(["-v"]);
    assert.equal(cli.quick, undefined);
    assert.equal(cli.config, "mini-balancer.toml");
    assert.equal(cli.printConfig, false);
  });

  it("names the flag of a bad value with the file's message", () => {
    const cases: [string[], string][] = [
      [
        ["--listen", "127.0.0.1:1", "--to", "x"],
        '--to must be host:port: current value is "x"',
      ],
      [
        ["--listen", "127.0.0.1:1", "--to", "127.0.0.1:2", "--to", "nope"],
        '--to must be host:port: current value is "nope"',
      ],
      [
        ["--listen", "x", "--to", "127.0.0.1:2"],
        '--listen must be host:port: current value is "x"',
      ],
      [
        ["--listen", "127.0.0.1:1", "--to", "udp:127.0.0.1:2"],
        '--to must be host:port: "udp:" is written on a frontend\'s bind_on only: ' +
        'current value is "udp:127.0.0.1:2"',
      ],
      [
        ["--listen", "127.0.0.1:1", "--to", "127.0.0.1:2", "--algorithm", "fastest"],
        "--algorithm must be one of round_robin, weighted_round_robin, least_connections, " +
        'random, power_of_two, source_hash, first: current value is "fastest"',
      ],
      [
        ["--listen", "127.0.0.1:1", "--to", "127.0.0.1:2", "--admin", "y"],
        '--admin must be host:port: current value is "y"',
      ],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseCli(args), { name: "TypeError", message }, args.join(" "));
    }
  });

  it("refuses flags that need another or cannot stand beside quick mode", () => {
    const cases: [string[], RegExp][] = [
      [["-c", "x.toml", ...QUICK], /^--listen cannot stand beside -c\/--config/],
      [["--to", "127.0.0.1:2"], /^--to needs --listen/],
      [["--admin", "127.0.0.1:2"], /^--admin needs --listen/],
      [["--print-config"], /^--print-config needs --listen/],
      [["--listen", "127.0.0.1:1"], /^--listen needs at least one --to/],
      [[...QUICK, "--watch"], /^--watch needs a config file/],
    ];
    for (const [args, message] of cases) {
      assert.throws(() => parseCli(args), { name: "TypeError", message }, args.join(" "));
    }
  });
});

describe("quickToml", () => {
  it("writes the file the flags stand for, in their order", () => {
    const text = quickToml({
      listen: "[::1]:8080",
      to: ["10.0.0.2:80", "[fe80::1]:80"],
      algorithm: "least_connections",
      admin: "127.0.0.1:9100",
    });
    assert.equal(
      text,
      "# The config of: mini-balancer --listen [::1]:8080 --to 10.0.0.2:80 --to [fe80::1]:80 " +
        "--algorithm least_connections --admin 127.0.0.1:9100\n" +
        '[frontend]\nbind_on = "[::1]:8080"\nalgorithm = "least_connections"\n\n' +
        '[[frontend.backend]]\nforward_to = "10.0.0.2:80"\n\n' +
        '[[frontend.backend]]\nforward_to = "[fe80::1]:80"\n\n' +
        '[admin]\nbind_on = "127.0.0.1:9100"\n',
    );
  });

  it("escapes what TOML cannot hold raw, so the text still parses", () => {
    const text = quickToml({ listen: 'a\nb\u007f"', to: ["c\\d"] });
    // The schema refuses these values, but the TOML itself parses: the message names the value.
    assert.throws(() => parseConfig(text), /frontend\.bind_on must be host:port/);
    assert.equal(
      text.split("\n")[0],
      '# The config of: mini-balancer --listen "a\\nb\\u007F\\"" --to "c\\\\d"',
    );
  });
});

describe("main in quick mode", () => {
  it("--print-config prints a file that check -c accepts as the flags", async () => {
    const flags = [...QUICK, "--admin", "127.0.0.1:9100"];
    const printed = await run([...flags, "--print-config"]);
    assert.equal(printed.code, 0);
    assert.equal(printed.err, "");
    const dir = await tempDir();
    try {
      const file = join(dir.path, "quick.toml");
      await writeFile(file, printed.out + "\n");
      const fromFile = await run(["check", "-c", file]);
      const fromFlags = await run(["check", ...flags]);
      assert.equal(fromFile.code, 0, fromFile.err);
      assert.equal(fromFlags.code, 0, fromFlags.err);
      const lines = (out: string) => out.split("\n");
      // The same summary, line for line; only the verdict names the source.
      assert.deepEqual(lines(fromFile.out).slice(0, -1), lines(fromFlags.out).slice(0, -1));
      assert.match(fromFile.out, /10\.0\.0\.2:80[^]*10\.0\.0\.1:80/);
      assert.equal(lines(fromFlags.out).at(-1), 'config "(command line)" is valid: 1 frontend');
      assert.equal(lines(fromFile.out).at(-1), `config "${file}" is valid: 1 frontend`);
    } finally {
      await dir.cleanup();
    }
  });

  it("a usage error is one line and exit 2, before anything is loaded", async () => {
    const result = await run(["-c", "missing.toml", ...QUICK]);
    assert.equal(result.code, 2);
    assert.deepEqual(result.err.split("\n"), [
      "mini-balancer: --listen cannot stand beside -c/--config: give a config file or the flags",
      "Try 'mini-balancer --help' for more information.",
    ]);
    const bad = await run(["check", "--listen", "127.0.0.1:1", "--to", "x"]);
    assert.equal(bad.code, 2);
    assert.equal(
      bad.err.split("\n")[0],
      'mini-balancer: --to must be host:port: current value is "x"',
    );
  });
});

describe("docs/operations.md", () => {
  it("shows what --print-config prints for the command it names", async () => {
    const page = await readFile(join(ROOT, "docs/operations.md"), "utf8");
    const shown =
      /`npx bun run src\/main\.ts ([^`]+) --print-config`:\n\n {2}```toml\n([^]*?) {2}```/
        .exec(page);
    assert.ok(shown !== null, "operations.md shows no --print-config output");
    const printed = await run([...shown[1]!.split(" "), "--print-config"]);
    assert.equal(printed.code, 0, printed.err);
    const lines = shown[2]!.split("\n").map((line) => line.slice(2)).join("\n");
    assert.equal(lines.trimEnd(), printed.out);
  });
});
