/**
 * The real program's command line: a port in use, bad configs, the default
 * config file, `check`, unknown options and --help, and workers where they
 * cannot run.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  bytes,
  closedPort,
  configText,
  echoServer,
  freePort,
  runProgram,
  tempDir,
} from "../_helpers/index.ts";
import { buildBefore, data, kinds, programBackends } from "./_setup.ts";

for (const kind of kinds) {
  describe(`mini-balancer as ${kind}`, () => {
    const backends = programBackends();

    buildBefore(kind);

    it("refuses a port already in use with exit code 1 and one line", async () => {
      const taken = echoServer();
      const dir = await tempDir();
      try {
        const file = join(dir.path, "lb.toml");
        await writeFile(
          file,
          bytes(configText([backends[0]!.address]).replace("127.0.0.1:0", taken.address)),
        );
        const { code, stderr } = await runProgram(kind, ["-c", file]);
        assert.equal(code, 1);
        assert.equal(
          stderr.trim(),
          `mini-balancer: cannot listen on ${taken.address} for frontend \"default\": address already in use`,
        );
      } finally {
        taken.close();
        await dir.cleanup();
      }
    });

    const badConfigs: [file: string, message: RegExp][] = [
      ["syntax_error.toml", /TOML syntax error at line 2, column 26/],
      ["mistyped_forward_to.toml", /frontend\.backend\[1\]\.forward_to must be a string/],
      ["no_backends.toml", /frontend\.backend is required/],
      ["port_out_of_range.toml", /frontend\.bind_on must be host:port/],
    ];
    for (const [file, message] of badConfigs) {
      it(`exits 1 with one clear line for ${file}`, async () => {
        const { code, stderr } = await runProgram(kind, ["-c", data(file)]);
        assert.equal(code, 1);
        const lines = stderr.trim().split("\n");
        assert.equal(lines.length, 1, stderr);
        assert.ok(lines[0]!.startsWith(`mini-balancer: Cannot load config "${data(file)}": `));
        assert.match(lines[0]!, message);
      });
    }

    it("reads mini-balancer.toml from the working directory by default", async () => {
      const dir = await tempDir();
      try {
        const { code, stderr } = await runProgram(kind, [], dir.path);
        assert.equal(code, 1);
        assert.equal(
          stderr.trim(),
          'mini-balancer: Cannot load config "mini-balancer.toml": file not found',
        );
      } finally {
        await dir.cleanup();
      }
    });

    it("says `check` fails on workers where they cannot run (the Node build)", {
      skip: kind !== "node",
    }, async () => {
      const dir = await tempDir();
      try {
        const file = join(dir.path, "lb.toml");
        await writeFile(
          file,
          `workers = 2\n${configText(["127.0.0.1:8080"])}`.replace(":0", ":7070"),
        );
        const { code, stdout, stderr } = await runProgram(kind, ["check", "-c", file]);
        assert.equal(code, 1, stdout);
        assert.equal(
          stderr.trim(),
          `mini-balancer: Cannot load config "${file}": workers is 2, but workers are not ` +
            "available on node (this build cannot start worker processes): set workers = 1",
        );
      } finally {
        await dir.cleanup();
      }
    });

    it("checks the walkthrough's config with `check` and exits 0 without serving", async () => {
      const { code, stdout } = await runProgram(kind, ["check", "-c", data("seed_example.toml")]);
      assert.equal(code, 0);
      assert.match(stdout, /frontend "default" on 127\.0\.0\.1:7070: round_robin over 2 backends/);
      assert.match(
        stdout,
        /\nconfig "[^"]*seed_example\.toml" is valid: 1 frontend\n?$/,
        "the verdict last",
      );
    });

    it("exits 2 on an unknown option and 0 on --help", async () => {
      const bad = await runProgram(kind, ["--frobnicate"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /Unknown option '--frobnicate'/);
      const help = await runProgram(kind, ["--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /-v, --verbose/);
    });

    // Node 20's net has no SO_REUSEPORT (reusePort came with Node 22.12):
    // the Node build refuses workers = N at start, with one line.
    if (kind === "node") {
      it("refuses workers = 2 with one line, as Node 20 has no SO_REUSEPORT", async () => {
        const dir = await tempDir();
        try {
          const file = join(dir.path, "workers.toml");
          await writeFile(
            file,
            `workers = 2\n` +
              configText([`127.0.0.1:${closedPort()}`]).replace(":0", `:${await freePort()}`),
          );
          const { code, stderr } = await runProgram(kind, ["-c", file]);
          assert.equal(code, 1);
          assert.match(
            stderr,
            /^mini-balancer: workers = 2 needs SO_REUSEPORT .*runtime \(node\) lacks: set workers = 1\n?$/,
          );
        } finally {
          await dir.cleanup();
        }
      });
    }
  });
}
