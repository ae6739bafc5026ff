/**
 * The Entrance through a whole Balancer (its frontends are real, and heavy
 * to build by hand), on one shared loopback port with recording backends
 * and recorded refusals: the frontend each connection's first bytes choose
 * (ssh, tls by sni and alpn, http by Host, postgres, the fallback), each
 * backend getting exactly its clients' bytes; the refusals' reasons where
 * no fallback takes a connection; a TLS-terminating frontend chosen by its
 * first bytes beside ssh; and a reload that changes the matchers keeping
 * the socket and an open connection while new connections follow the new
 * matchers.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, describe, it } from "node:test";
import { Balancer } from "../../../src/balancer/balancer.ts";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadConfig, parseConfig } from "../../../src/config/load.ts";
import {
  bytes,
  type Certificate,
  concat,
  connect,
  eventually,
  exchange,
  freePort,
  makeCertificate,
  net,
  recordingBackend,
  refusals,
  sleep,
  tempDir,
  tlsClient,
  tlsTables,
  within,
} from "../../_helpers/index.ts";
import {
  CURL_HEAD,
  hello,
  latin1,
  PG_SSL_REQUEST,
  pgStartup,
  SSH_BANNER,
} from "../protocol/_samples.ts";

let dir: Awaited<ReturnType<typeof tempDir>>;
let cert: Certificate;
before(async () => {
  dir = await tempDir();
  cert = await makeCertificate(dir.path, ["s.test"]);
});
after(() => dir.cleanup());

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const HEADER_TIMEOUT = `header_timeout = "500ms"`;

function backend() {
  const made = recordingBackend();
  cleanups.push(() => made.close());
  return made;
}

/** One `[[frontends]]` table on `port` with `keys`, forwarding to `to`. */
function frontend(name: string, port: number, keys: string, to: string): string {
  return `[[frontends]]\nname = "${name}"\nbind_on = "127.0.0.1:${port}"\n${HEADER_TIMEOUT}\n${keys}\n` +
    `[[frontends.backend]]\nforward_to = "${to}"\n`;
}

/** Starts a balancer on `config`, loaded from a file (certificates are read from theirs). */
async function start(config: string) {
  const { seen, events } = refusals();
  const file = join(dir.path, "balancer.toml");
  await writeFile(file, config);
  const lb = await Balancer.start(await loadConfig(file), { net, events });
  cleanups.push(() => lb.stop({ graceMs: 0 }));
  return { lb, seen };
}

function latin1Text(data: Uint8Array): string {
  return Array.from(data, (byte) => String.fromCharCode(byte)).join("");
}

/** Sends `first` and a marker naming the connection, half-closes, returns the echo. */
async function send(port: number, first: Uint8Array, id: string) {
  const sent = concat([first, bytes(`#${id}#`)]);
  const { data } = await within(exchange(port, sent), 3_000, `connection ${id}`);
  return { sent: latin1Text(sent), echoed: latin1Text(data) };
}

describe("Entrance", () => {
  it("sends each connection to the frontend its first bytes choose, with exactly its bytes", async () => {
    const port = await freePort();
    const b = {
      ssh: backend(),
      tlsH2: backend(),
      tlsA: backend(),
      http: backend(),
      pg: backend(),
      rest: backend(),
    };
    const { lb, seen } = await start(
      frontend("ssh", port, `protocol = "ssh"`, b.ssh.address) +
        frontend("a-h2", port, `sni = ["a.test"]\nalpn = ["h2"]`, b.tlsH2.address) +
        frontend("a", port, `sni = ["a.test"]`, b.tlsA.address) +
        frontend("http", port, `http_host = ["h.test", "*.h.test"]`, b.http.address) +
        frontend("pg", port, `protocol = "postgres"`, b.pg.address) +
        frontend("rest", port, `detect_timeout = "100ms"`, b.rest.address),
    );
    assert.ok(lb.addresses.every((a) => a.port === port), "one address for six frontends");
    const cases: [string, Uint8Array, keyof typeof b][] = [
      ["ssh banner", SSH_BANNER, "ssh"],
      ["hello a.test offering h2", hello({ sni: "a.test", alpn: ["http/1.1", "h2"] }), "tlsH2"],
      ["hello A.TEST offering http/1.1", hello({ sni: "A.TEST", alpn: ["http/1.1"] }), "tlsA"],
      ["hello a.test without alpn", hello({ sni: "a.test" }), "tlsA"],
      ["hello for another name", hello({ sni: "b.test", alpn: ["h2"] }), "rest"],
      ["hello without a name", hello({ alpn: ["h2"] }), "rest"],
      ["curl to h.test:8080", CURL_HEAD, "http"],
      ["http to x.h.test", latin1("GET / HTTP/1.1\r\nHost: X.H.test\r\n\r\n"), "http"],
      ["http to another host", latin1("GET / HTTP/1.1\r\nHost: other.test\r\n\r\n"), "rest"],
      ["http without a Host", latin1("GET / HTTP/1.0\r\n\r\n"), "rest"],
      ["postgres SSLRequest", PG_SSL_REQUEST, "pg"],
      ["postgres startup", pgStartup(), "pg"],
      ["garbage", latin1("\x01\x02hello garbage"), "rest"],
      ["SMTP-style silence", new Uint8Array(0), "rest"],
    ];
    const expected = new Map<keyof typeof b, string[]>();
    for (const [i, [what, first, to]] of cases.entries()) {
      let result;
      if (first.length === 0) {
        // A silent client goes to the fallback after detect_timeout, then speaks.
        const client = await connect(port);
        await sleep(200);
        client.conn.write(bytes(`#${i}#`));
        client.conn.end();
        await within(client.closed, 3_000, what);
        result = { sent: `#${i}#`, echoed: latin1Text(client.received()) };
      } else result = await send(port, first, String(i));
      assert.equal(result.echoed, result.sent, `${what}: the echo`);
      expected.set(to, [...(expected.get(to) ?? []), result.sent]);
    }
    for (const [name, made] of Object.entries(b)) {
      const got = made.contents().map(latin1Text);
      assert.deepEqual(got, expected.get(name as keyof typeof b) ?? [], `what ${name} received`);
    }
    assert.deepEqual(seen, [], "nothing refused");
    await eventually(() => lb.stats.pendingTimers === 0, "every timer to go", 2_000);
  });

  /** Sends `data` and checks the connection is refused with `why`, no byte back nor to a backend. */
  async function refused(
    port: number,
    seen: { why: string }[],
    backends: ReturnType<typeof backend>[],
    data: Uint8Array,
    why: string,
    end = true,
  ) {
    const before = seen.length;
    const client = await connect(port);
    client.conn.write(data);
    if (end) client.conn.end();
    const started = performance.now();
    // The balancer's FIN; a client held open then closes its side too.
    await within(
      client.ended,
      2_000,
      `the refusal (${why}) of ${JSON.stringify(latin1Text(data))}`,
    );
    const ms = performance.now() - started;
    client.conn.close();
    await within(client.closed, 2_000, "the refused connection to close");
    assert.equal(client.receivedLength(), 0, `${why}: nothing comes back`);
    assert.deepEqual(seen.slice(before).map((s) => s.why), [why]);
    assert.equal(backends.reduce((n, b) => n + b.connections, 0), 0, `${why}: no backend reached`);
    return ms;
  }

  it("without a fallback, refuses what no frontend takes: no_match where several protocols are asked for", async () => {
    const port = await freePort();
    const [ssh, http] = [backend(), backend()];
    const { seen } = await start(
      frontend("ssh", port, `protocol = "ssh"`, ssh.address) +
        frontend("http", port, `http_host = ["h.test"]`, http.address),
    );
    await refused(port, seen, [ssh, http], latin1("\x00\x01 noise"), "no_match");
    await refused(port, seen, [ssh, http], hello({ sni: "h.test" }), "no_match");
    await refused(port, seen, [ssh, http], latin1("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "no_match");
    // Half-closed before the first bytes told anything.
    await refused(port, seen, [ssh, http], latin1("SSH-2"), "no_match");
    // Held open: refused at header_timeout.
    const ms = await refused(port, seen, [ssh, http], latin1("SSH-2"), "no_match", false);
    assert.ok(ms >= 450 && ms < 900, `refused after ${ms.toFixed(0)} ms`);
  });

  it("without a fallback, refuses on a TLS-only address with not_tls, bad_hello or unknown_server_name", async () => {
    const port = await freePort();
    const [a, b] = [backend(), backend()];
    const { seen } = await start(
      frontend("a", port, `sni = ["a.test"]`, a.address) +
        frontend("b", port, `sni = ["*.b.test"]`, b.address),
    );
    await refused(port, seen, [a, b], latin1("GET / HTTP/1.1\r\n\r\n"), "not_tls");
    await refused(port, seen, [a, b], SSH_BANNER, "not_tls");
    const broken = hello({ sni: "a.test" });
    broken[5] = 2; // a ServerHello where the ClientHello should be
    await refused(port, seen, [a, b], broken, "bad_hello");
    await refused(port, seen, [a, b], hello({ sni: "a.test" }).subarray(0, 20), "bad_hello");
    await refused(port, seen, [a, b], hello({ sni: "c.test" }), "unknown_server_name");
    await refused(port, seen, [a, b], hello({ sni: "b.test" }), "unknown_server_name");
    await refused(port, seen, [a, b], hello({}), "unknown_server_name");
    assert.equal(
      await send(port, hello({ sni: "x.b.test" }), "ok").then((r) => r.echoed === r.sent),
      true,
    );
    assert.equal(b.connections, 1);
  });

  for (const keys of [`protocol = "tls"`, ""]) {
    const role = keys === "" ? "the fallback" : `chosen by ${keys}`;
    it(`terminates TLS on a frontend ${role} beside ssh; an SSH banner goes to ssh`, async () => {
      const port = await freePort();
      const [ssh, secure] = [backend(), backend()];
      const { seen } = await start(
        frontend("ssh", port, `protocol = "ssh"`, ssh.address) +
          frontend("secure", port, `${keys}\n${tlsTables("frontends", [cert])}`, secure.address),
      );
      const client = tlsClient(port, "s.test", cert.cert);
      cleanups.push(() => client.socket.destroy());
      await within(client.secure, 3_000, "the handshake");
      client.socket.write("ping over tls");
      await eventually(() => client.received() === "ping over tls", "the echo through TLS", 3_000);
      client.socket.end();
      await within(client.closed, 3_000, "the TLS client to close");
      assert.deepEqual(secure.received(), ["ping over tls"], "the backend gets the plaintext");

      const banner = await send(port, SSH_BANNER, "ssh");
      assert.equal(banner.echoed, banner.sent);
      assert.deepEqual(ssh.contents().map(latin1Text), [banner.sent]);
      // A terminating frontend takes TLS only, even as the fallback.
      await refused(port, seen, [], latin1("GET / HTTP/1.1\r\n\r\n"), "no_match");
      assert.equal(secure.connections + ssh.connections, 2, "no third backend connection");
    });
  }

  it("a reload that changes the matchers keeps the socket and open connections, and routes new ones by the new matchers", async () => {
    const port = await freePort();
    const [one, two, three] = [backend(), backend(), backend()];
    const config = (oneKeys: string, twoKeys: string, more = "") =>
      parseConfig(
        frontend("one", port, oneKeys, one.address) + frontend("two", port, twoKeys, two.address) +
          more,
      );
    const { lb } = await start(
      frontend("one", port, `protocol = "ssh"`, one.address) +
        frontend("two", port, `http_host = ["h.test"]`, two.address),
    );
    // An SSH session open across the reload.
    const open = await connect(port);
    cleanups.push(() => open.conn.reset());
    open.conn.write(SSH_BANNER);
    await eventually(() => open.receivedLength() === SSH_BANNER.length, "the banner's echo", 3_000);
    assert.equal(one.connections, 1);

    const summary = await lb.reload(
      config(
        `http_host = ["h.test"]`,
        `protocol = "ssh"`,
        frontend("three", port, "", three.address),
      ),
    );
    assert.deepEqual(summary.failures, []);
    assert.deepEqual(summary.frontendsAdded, ["three"]);
    assert.equal(lb.addresses[0]!.port, port, "the same port");

    open.conn.write(bytes("after the reload"));
    await eventually(
      () => one.text(0).endsWith("after the reload"),
      "the open session to go on to its backend",
      3_000,
    );
    const ssh = await send(port, SSH_BANNER, "new ssh");
    const http = await send(port, CURL_HEAD, "new http");
    const other = await send(port, latin1("noise"), "new noise");
    for (const r of [ssh, http, other]) assert.equal(r.echoed, r.sent);
    assert.deepEqual(one.contents().slice(1).map(latin1Text), [http.sent], "one: now http");
    assert.deepEqual(two.contents().map(latin1Text), [ssh.sent], "two: now ssh");
    assert.deepEqual(three.contents().map(latin1Text), [other.sent], "three: the new fallback");
    open.conn.end();
    await within(open.closed, 3_000, "the open session to end");
    assert.equal(one.text(0), latin1Text(SSH_BANNER) + "after the reload");
  });
});
