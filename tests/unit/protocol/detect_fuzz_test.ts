import assert from "node:assert/strict";
import process from "node:process";
import { describe, it } from "node:test";
import {
  detect,
  type Detection,
  MAX_DETECT_BYTES,
  type Wanted,
} from "../../../src/protocol/detect.ts";
import {
  ALL,
  concat,
  CURL_HEAD,
  hello,
  latin1,
  OPENSSL_H2_HELLO,
  OPENSSL_HTTP1_HELLO,
  PG_CANCEL,
  PG_GSSENC_REQUEST,
  PG_SSL_REQUEST,
  pgStartup,
  SSH_BANNER,
} from "./_samples.ts";

const CASES = 100_000;

/** mulberry32: a small seeded PRNG, so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Everything a case draws from one PRNG. */
class Draw {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = prng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  bytes(n: number): Uint8Array {
    return Uint8Array.from({ length: n }, () => this.int(256));
  }
  name(): string {
    const labels = Array.from(
      { length: 1 + this.int(3) },
      () => this.pick(["a", "b", "xn--p1ai", "test", "H"]),
    );
    return labels.join(".");
  }
}

const SEEDS: Uint8Array[] = [
  OPENSSL_H2_HELLO,
  OPENSSL_HTTP1_HELLO,
  SSH_BANNER,
  latin1("SSH-1.99-Cisco-1.25\r\n"),
  CURL_HEAD,
  latin1("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n"),
  latin1("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
  PG_SSL_REQUEST,
  PG_GSSENC_REQUEST,
  PG_CANCEL,
  pgStartup(),
];

/** One first-byte sequence: noise, a truncated or mutated sample, a built hello or head. */
function sequence(draw: Draw): Uint8Array {
  switch (draw.int(8)) {
    case 0: // binary noise, now and then long
      return draw.bytes(draw.chance(0.002) ? MAX_DETECT_BYTES + draw.int(2000) : draw.int(64));
    case 1: { // a built hello, maybe over several records, truncated
      const bytes = hello({
        sni: draw.chance(0.8) ? draw.name() : undefined,
        alpn: draw.chance(0.7)
          ? Array.from({ length: 1 + draw.int(3) }, () => draw.pick(["h2", "http/1.1", "h3"]))
          : undefined,
        padding: draw.chance(0.01) ? draw.int(17_000) : draw.int(200),
        recordSize: draw.pick([16384, 16384, 100, 7, 1]),
      });
      return draw.chance(0.5) ? bytes.subarray(0, draw.int(bytes.length + 1)) : bytes;
    }
    case 2: { // an HTTP head, with or without Host, sometimes oversized
      const host = draw.chance(0.6)
        ? `Host: ${draw.name()}${draw.chance(0.3) ? ":8080" : ""}\r\n`
        : "";
      const filler = draw.chance(0.003) ? `Cookie: ${"c".repeat(8200)}\r\n` : "";
      const eol = draw.pick(["\r\n", "\n"]);
      const head = latin1(
        `${draw.pick(["GET", "POST", "M-SEARCH", "get"])} ${
          draw.pick(["/", "*", "http://x/"])
        } HTTP/1.${draw.int(3)}${eol}${filler}${host}Accept: */*${eol}${eol}`,
      );
      return draw.chance(0.4) ? head.subarray(0, draw.int(head.length + 1)) : head;
    }
    default: { // a sample, mutated: bytes flipped, cut, or glued to another
      const base = Uint8Array.from(draw.pick(SEEDS));
      for (let n = draw.int(4); n > 0 && base.length > 0; n--) {
        for (let n = draw.int(4); n > 0 && base.length > 0; n--) {
          // Half the flips are near misses (one more, one less), where a check is easiest to get wrong.
          const at = draw.int(base.length);
          base[at] = draw.chance(0.5) ? base[at]! + draw.pick([1, -1]) : draw.int(256);
        }
      }
      const cut = draw.chance(0.5) ? base.subarray(0, draw.int(base.length + 1)) : base;
      return draw.chance(0.1) ? concat(cut, draw.pick(SEEDS)) : cut;
    }
  }
}

function wanted(draw: Draw): Wanted {
  if (draw.chance(0.5)) return ALL;
  return {
    tls: draw.chance(0.5),
    http: draw.pick(["no", "line", "host"] as const),
    ssh: draw.chance(0.5),
    postgres: draw.chance(0.5),
  };
}

/**
 * The first answer that is not incomplete when the bytes arrive in these
 * segments, asked as the preamble asks: not again before the `need` of the
 * last incomplete answer (so a wrong `need` shows as a late or missed answer).
 */
function fed(bytes: Uint8Array, cuts: readonly number[], want: Wanted): Detection {
  let need = 1;
  for (const cut of [...cuts, bytes.length]) {
    if (cut < need) continue;
    const answer = detect(bytes.subarray(0, cut), want);
    if (answer.status === "done") return answer;
    need = answer.need ?? cut + 1;
  }
  return { status: "incomplete" };
}

/** An answer without the incomplete one's `need`, which depends on how far the bytes go. */
function bare(answer: Detection): Detection {
  return answer.status === "incomplete" ? { status: "incomplete" } : answer;
}

const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const HTTP_LINE = new RegExp(`^${TCHAR}{1,32} [\\x21-\\x7e]+ HTTP/1\\.[01]\\r?\\n`);

/** Whether the bytes start with the protocol's signature, checked independently of the parsers. */
function startsAs(protocol: string, bytes: Uint8Array): boolean {
  const text = String.fromCharCode(...bytes.subarray(0, 200));
  const word = (at: number) =>
    (bytes[at]! << 24 | bytes[at + 1]! << 16 | bytes[at + 2]! << 8 | bytes[at + 3]!) >>> 0;
  switch (protocol) {
    case "tls":
      return bytes[0] === 0x16 && bytes[1] === 3 && bytes[5] === 1;
    case "ssh":
      return text.startsWith("SSH-2.0-") || text.startsWith("SSH-1.99-");
    case "postgres": {
      const [length, code] = [word(0), word(4)];
      return (length === 8 && (code === 80877103 || code === 80877104)) ||
        (length === 16 && code === 80877102) ||
        (length >= 8 && length <= 10_000 && (code === 196608 || code === 196610));
    }
    case "http":
      return HTTP_LINE.test(String.fromCharCode(...bytes.subarray(0, 8192)));
  }
  return false;
}

describe("detect under fuzzing", () => {
  it(`answers ${CASES} random and mutated sequences consistently, within its limits`, () => {
    const seed = Number(process.env.DETECT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const draw = new Draw(seed);
    const started = performance.now();
    let done = 0;
    for (let i = 0; i < CASES; i++) {
      const bytes = sequence(draw);
      const want = wanted(draw);
      const cuts = Array.from({ length: draw.int(5) }, () => draw.int(bytes.length + 1)).sort((
        a,
        b,
      ) => a - b);
      if (draw.chance(0.01) && bytes.length < 600) {
        cuts.push(...Array.from({ length: bytes.length }, (_, k) => k));
      }
      cuts.sort((a, b) => a - b);
      try {
        const whole = detect(bytes, want);
        if (bytes.length >= MAX_DETECT_BYTES) {
          assert.equal(whole.status, "done", "incomplete past MAX_DETECT_BYTES");
          assert.deepEqual(
            detect(bytes.subarray(0, MAX_DETECT_BYTES), want),
            whole,
            "read past MAX_DETECT_BYTES",
          );
        }
        assert.deepEqual(fed(bytes, cuts, want), bare(whole), `fed in segments cut at ${cuts}`);
        if (whole.status === "incomplete" && whole.need !== undefined) {
          assert.ok(whole.need > bytes.length && whole.need <= MAX_DETECT_BYTES, "need");
        }
        if (whole.status === "done") {
          done++;
          const { protocol } = whole.facts;
          if (protocol !== undefined) {
            assert.ok(
              protocol === "http" ? want.http !== "no" : want[protocol],
              `${protocol} was not wanted`,
            );
            assert.ok(startsAs(protocol, bytes), `classified ${protocol} without its signature`);
          } else {
            assert.ok((whole.facts.reason ?? "") !== "", "no reason for no protocol");
          }
        }
      } catch (error) {
        const sample = Array.from(bytes.subarray(0, 64), (b) => b.toString(16).padStart(2, "0"))
          .join("");
        throw new Error(
          `DETECT_FUZZ_SEED=${seed}, case ${i}, wanted ${
            JSON.stringify(want)
          }, ${bytes.length} bytes ` +
            `starting ${sample}: ${(error as Error).message}`,
          { cause: error },
        );
      }
    }
    const elapsed = performance.now() - started;
    // Most sequences are decided (the rest are prefixes still waiting), and all in a few seconds.
    assert.ok(done > CASES / 2, `only ${done} of ${CASES} decided (seed ${seed})`);
    assert.ok(elapsed < 20_000, `${Math.round(elapsed)} ms (seed ${seed})`);
  });
});
