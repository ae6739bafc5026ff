/**
 * The config rules that span keys and frontends, checked once the schema
 * passed: backend names, the keys that only make sense together, names and
 * addresses that must not clash (or may be shared to route by protocol),
 * the admin listener's address, and what workers cannot do.
 *
 * @module
 */
import { formatAddress, formatBindAddress, isWildcardHost } from "../address/address.ts";
import { ties } from "../protocol/matchers.ts";
import type { AdminConfig, BackendConfig, FrontendConfig } from "./config.ts";

/** A TOML table as written. */
export type Table = Record<string, unknown>;

/** Throws the ConfigError of a field and its problem. */
export type Fail = (path: string, problem: string) => never;

/** A validated frontend, where it sits in the file and its table as written. */
export interface Entry {
  /** Where it sits: `frontend`, `frontends[1]`. */
  path: string;
  /** The frontend as validated. */
  frontend: FrontendConfig;
  /** Its table as the file wrote it. */
  table: Table;
}

/**
 * Backend names must differ within a frontend: source_hash places backends
 * on its ring by name, and HAProxy too rejects two servers of one name. An
 * unnamed backend is named by its address, so the same address twice
 * clashes as well: that is almost surely a typo (`weight` gives a backend a
 * bigger share).
 */
export function checkBackendNames({ path, frontend, table }: Entry, fail: Fail): void {
  const written = table.backend as Table[];
  const seen = new Map<string, number>();
  frontend.backends.forEach(({ name }, i) => {
    const first = seen.get(name);
    if (first === undefined) {
      seen.set(name, i);
      return;
    }
    const earlier = `${path}.backend[${first}]`;
    const named = (table: Table | undefined) => table?.name !== undefined;
    if (named(written[i])) {
      fail(`${path}.backend[${i}].name`, `repeats the name of ${earlier}: ${JSON.stringify(name)}`);
    }
    fail(
      `${path}.backend[${i}].forward_to`,
      named(written[first])
        ? `repeats the name of ${earlier}, and a backend without a name is named by its ` +
          `address: ${JSON.stringify(name)}`
        : `repeats the address of ${earlier}: ${JSON.stringify(name)}`,
    );
  });
}

/**
 * What workers cannot do: port 0 (each would get a port of its own), and a
 * Unix socket (which one process binds).
 */
export function checkWorkers(entries: Entry[], fail: Fail): void {
  for (const { path, frontend } of entries) {
    if (frontend.bindOn.path !== undefined) {
      fail(
        "workers",
        `cannot serve a Unix socket (${path}.bind_on): one process binds it; use workers = 1`,
      );
    }
    if (frontend.bindOn.port === 0) {
      fail(
        "workers",
        `need a fixed port (${path}.bind_on is port 0): each worker would get a port of its own`,
      );
    }
  }
}

/**
 * The keys of a frontend that act on TCP connections only, and why each
 * means nothing to a UDP flow; a UDP frontend that writes one is refused
 * rather than left to wonder why it has no effect.
 */
const TCP_ONLY_KEYS: readonly (readonly [string, string])[] = [
  ["tls", "TLS runs over TCP"],
  ["sni", "a UDP address is one frontend's: there are no first bytes to choose by"],
  ["alpn", "a UDP address is one frontend's: there are no first bytes to choose by"],
  ["protocol", "a UDP address is one frontend's: there are no first bytes to choose by"],
  ["http_host", "a UDP address is one frontend's: there are no first bytes to choose by"],
  ["detect_timeout", "a UDP address is one frontend's: there are no first bytes to choose by"],
  ["accept_proxy", "there is no PROXY protocol over UDP"],
  ["trusted", "there is no PROXY protocol over UDP"],
  ["header_timeout", "a flow reads nothing before its backend is chosen"],
  ["unix_mode", "UDP is not served on Unix sockets"],
  ["max_bytes_per_second", "a flow's datagrams are not paced"],
  [
    "log_interval",
    "a flow logs when it ends; /metrics counts its datagrams every few seconds while it is open",
  ],
  [
    "queue_timeout",
    "a flow never waits: a datagram that would open a flow past max_connections is dropped",
  ],
  [
    "connect_timeout",
    "a flow's socket connects at once; idle_timeout ends a flow whose backend never replies",
  ],
  [
    "retries",
    "a flow whose backend reports an error (ICMP unreachable) moves to another backend " +
    "with its next datagram",
  ],
];

/**
 * What one backend of a UDP frontend cannot have: a Unix socket address,
 * `send_proxy` (the config file's and the admin API's check).
 *
 * @param path the backend's path (`frontend.backend[0]`, or `backend`)
 * @param backend the backend
 * @param written its table as written
 * @param bind the frontend's bind_on, formatted
 * @param fail throws the problem
 */
export function checkUdpBackend(
  path: string,
  backend: BackendConfig,
  written: Table | undefined,
  bind: string,
  fail: Fail,
): void {
  if (backend.forwardTo.path !== undefined) {
    fail(
      `${path}.forward_to`,
      "must be host:port on a UDP frontend (UDP is not forwarded to Unix sockets): " +
        `current value is ${JSON.stringify(backend.address)}`,
    );
  }
  if (written?.send_proxy !== undefined) {
    fail(
      `${path}.send_proxy`,
      `applies to TCP frontends only: bind_on is "${bind}" (there is no PROXY protocol over UDP)`,
    );
  }
}

/**
 * What a UDP frontend cannot have (the TCP-only keys, Unix-socket
 * backends, PROXY headers, resets, HTTP or TLS probes without a TCP port,
 * probe payloads that are not bytes), and `responses` on a TCP one.
 */
export function checkUdp({ path, frontend, table }: Entry, fail: Fail): void {
  const bind = formatBindAddress(frontend.bindOn, frontend.transport);
  if (frontend.transport !== "udp") {
    if (table.responses !== undefined) {
      fail(
        `${path}.responses`,
        `applies to UDP frontends only (bind_on = "udp:HOST:PORT"): bind_on is "${bind}"`,
      );
    }
    return;
  }
  const tcpOnly = (key: string, why: string) =>
    fail(key, `applies to TCP frontends only: bind_on is "${bind}" (${why})`);
  for (const [key, why] of TCP_ONLY_KEYS) {
    // `accept_proxy = false` asks for what a UDP frontend does anyway.
    if (table[key] !== undefined && !(key === "accept_proxy" && table[key] === false)) {
      tcpOnly(`${path}.${key}`, why);
    }
  }
  if (table.when_all_down === "reset") {
    fail(
      `${path}.when_all_down`,
      `is "reset", which applies to TCP frontends only: bind_on is "${bind}" ` +
        "(UDP has no reset: a datagram no backend can take is dropped)",
    );
  }
  const written = (table.backend ?? []) as Table[];
  frontend.backends.forEach((backend, i) => {
    checkUdpBackend(`${path}.backend[${i}]`, backend, written[i], bind, fail);
  });
  checkUdpHealth(path, frontend, table.health as Table | undefined, fail);
}

/**
 * A UDP frontend's probes without `port` are datagrams: `send` and `expect`
 * are bytes, and an HTTP or TLS check needs a TCP port to go to.
 */
function checkUdpHealth(
  path: string,
  frontend: FrontendConfig,
  health: Table | undefined,
  fail: Fail,
): void {
  if (health === undefined || !frontend.health.udp) return;
  for (const key of ["http_path", "tls"]) {
    if (health[key] === undefined) continue;
    const check = key === "tls" ? "TLS" : "HTTP";
    fail(
      `${path}.health.${key}`,
      `needs port on a UDP frontend: ${check} checks go over TCP to that port ` +
        "(without port, a probe is the datagram send, up on a reply holding expect)",
    );
  }
  for (const key of ["send", "expect"]) {
    const text = health[key];
    if (typeof text !== "string") continue;
    const at = [...text].findIndex((character) => character.codePointAt(0)! > 0xff);
    if (at < 0) continue;
    const code = [...text][at]!.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    fail(
      `${path}.health.${key}`,
      "must be bytes on a UDP frontend, each character U+0000 to U+00FF " +
        `(write binary as "\\u00XX"): character ${at + 1} is U+${code}`,
    );
  }
}

/** The keys of one frontend that only make sense together. */
export function checkEdge(entry: Entry, fail: Fail): void {
  const { path, frontend } = entry;
  // A Unix socket's file permissions say who may connect: no list there.
  if (
    frontend.acceptProxy && frontend.trusted === undefined && frontend.bindOn.path === undefined
  ) {
    fail(
      `${path}.trusted`,
      "is required with accept_proxy = true: list the addresses of the proxies in front, " +
        'such as ["10.0.0.0/8"]',
    );
  }
  if (!frontend.acceptProxy && frontend.trusted !== undefined) {
    fail(`${path}.trusted`, "has no effect without accept_proxy = true");
  }
  if (frontend.unixMode !== undefined && frontend.bindOn.path === undefined) {
    fail(
      `${path}.unix_mode`,
      `applies to a Unix socket only (bind_on = "unix:/path"): bind_on is "${
        formatAddress(frontend.bindOn)
      }"`,
    );
  }
  if (frontend.sni !== undefined && frontend.tls !== undefined) {
    fail(
      `${path}.sni`,
      "cannot stand beside tls: sni routes TLS through untouched, tls terminates it " +
        "(a terminating frontend chooses its certificate by name with tls's names)",
    );
  }
  checkMatchers(entry, fail);
}

/** `protocol`, `sni`, `alpn`, `http_host` and `detect_timeout` agree with each other. */
function checkMatchers({ path, frontend, table }: Entry, fail: Fail): void {
  const explicit = table.protocol;
  const tlsKey = frontend.sni !== undefined ? "sni" : frontend.alpn !== undefined ? "alpn" : "";
  if (tlsKey !== "" && frontend.httpHost !== undefined) {
    fail(
      `${path}.http_host`,
      `cannot stand beside ${tlsKey}: ${tlsKey} takes TLS clients, http_host plain HTTP ones`,
    );
  }
  if (explicit !== undefined && tlsKey !== "" && explicit !== "tls") {
    fail(
      `${path}.protocol`,
      `is "${explicit}", but ${tlsKey} takes TLS clients only: use protocol = "tls" or leave it out`,
    );
  }
  if (explicit !== undefined && frontend.httpHost !== undefined && explicit !== "http") {
    fail(
      `${path}.protocol`,
      `is "${explicit}", but http_host takes HTTP clients only: use protocol = "http" or leave it out`,
    );
  }
  if (
    frontend.tls !== undefined && frontend.protocol !== undefined && frontend.protocol !== "tls"
  ) {
    fail(
      `${path}.protocol`,
      `is "${frontend.protocol}", but tls terminates TLS: a terminating frontend takes TLS clients only`,
    );
  }
  if (frontend.alpn !== undefined && frontend.tls !== undefined) {
    fail(
      `${path}.alpn`,
      "cannot stand beside tls: alpn routes TLS through untouched, tls terminates it",
    );
  }
  const timeout = frontend.detectTimeoutMs;
  if (timeout === undefined) return;
  if (frontend.protocol !== undefined) {
    fail(
      `${path}.detect_timeout`,
      "applies to the fallback only (the frontend without protocol, sni, alpn or http_host), " +
        "which takes the clients that stay silent",
    );
  }
  if (timeout >= frontend.headerTimeoutMs) {
    fail(
      `${path}.detect_timeout`,
      `must be shorter than header_timeout (${frontend.headerTimeoutMs}ms): current value is ${timeout}ms`,
    );
  }
}

/**
 * The keys that act before a frontend is chosen on a shared address, and so
 * must be the same on every frontend there.
 */
const LISTENER_KEYS = [
  ["accept_proxy", (f: FrontendConfig) => f.acceptProxy],
  ["trusted", (f: FrontendConfig) => f.trusted?.toString()],
  ["header_timeout", (f: FrontendConfig) => f.headerTimeoutMs],
  ["unix_mode", (f: FrontendConfig) => f.unixMode],
] as const;

/**
 * Frontends need distinct names, and addresses that can be bound side by
 * side; several may share one address when their first bytes tell them apart.
 */
export function checkUnique(entries: Entry[], fail: Fail): void {
  const names = new Map<string, string>();
  const groups = new Map<string, Entry[]>();
  for (const [i, entry] of entries.entries()) {
    const { path, frontend } = entry;
    const sameName = names.get(frontend.name);
    if (sameName !== undefined) {
      fail(`${path}.name`, `repeats the name of ${sameName}: "${frontend.name}"`);
    }
    names.set(frontend.name, path);
    // A TCP and a UDP socket on one host:port are two sockets: they never clash.
    const bind = formatBindAddress(frontend.bindOn, frontend.transport);
    const group = groups.get(bind);
    const shareable = frontend.bindOn.port !== 0 || frontend.bindOn.path !== undefined;
    if (group !== undefined && shareable) {
      if (frontend.transport === "udp") {
        const other = group[0]!;
        fail(
          `${path}.bind_on`,
          `repeats an address: frontend "${frontend.name}" and frontend "${other.frontend.name}" ` +
            `(${other.path}) are both on "${bind}" (UDP frontends cannot share an address: ` +
            "a datagram has no first bytes to choose a frontend by)",
        );
      }
      checkShared(group, entry, fail);
      group.push(entry);
    } else groups.set(bind, [entry]);
    for (const earlier of entries.slice(0, i)) {
      if (earlier.frontend.transport !== frontend.transport) continue;
      const other = earlier.frontend.bindOn;
      // A Unix path is shared or not (above); it never clashes with a port.
      if (other.path !== undefined || frontend.bindOn.path !== undefined) continue;
      // Port 0 asks for a free port each time, so it never clashes.
      if (other.port !== frontend.bindOn.port || other.port === 0) continue;
      if (other.hostname === frontend.bindOn.hostname) continue; // a shared address, above
      if (
        covers(other.hostname, frontend.bindOn.hostname) ||
        covers(frontend.bindOn.hostname, other.hostname)
      ) {
        // Both by name: an index alone leaves the reader counting tables.
        fail(
          `${path}.bind_on`,
          `clashes: frontend "${frontend.name}" on ${bind} and frontend ` +
            `"${earlier.frontend.name}" on ${
              formatBindAddress(other, earlier.frontend.transport)
            } cannot both be bound`,
        );
      }
    }
  }
}

/**
 * The admin listener cannot take a frontend's address, nor overlap one (a
 * wildcard and an address on the same port): the start would fail to bind.
 */
export function checkAdminAddress(admin: AdminConfig, entries: Entry[], fail: Fail): void {
  const mine = admin.bindOn;
  if (mine.path !== undefined || mine.port === 0) return;
  for (const { path, frontend } of entries) {
    const other = frontend.bindOn;
    // The admin listener is TCP: a UDP socket on its port is another socket.
    if (frontend.transport === "udp") continue;
    if (other.path !== undefined || other.port !== mine.port) continue;
    if (
      other.hostname === mine.hostname || covers(other.hostname, mine.hostname) ||
      covers(mine.hostname, other.hostname)
    ) {
      const them = `${path} ("${frontend.name}" on ${formatAddress(other)})`;
      fail("admin.bind_on", `clashes with ${them}: "${formatAddress(mine)}"`);
    }
  }
}

/**
 * Whether `entry` may share the address of the frontends in `group`: no two
 * of them would take the same connection equally (matchers.ts's ties: the
 * same server name, Host or ALPN name at the same level, the same protocol
 * alone, two fallbacks), and the listener's keys agree.
 */
function checkShared(group: Entry[], entry: Entry, fail: Fail): void {
  const { path, frontend } = entry;
  const first = group[0]!;
  const bind = formatAddress(frontend.bindOn);
  const all = [...group, entry];
  const last = group.length;
  for (const [a, b, why] of ties(all.map((e) => e.frontend))) {
    if (a !== last && b !== last) continue;
    const other = all[a === last ? b : a]!;
    if (other.frontend.protocol === undefined && frontend.protocol === undefined) {
      fail(
        `${path}.bind_on`,
        `repeats an address: frontend "${frontend.name}" and frontend "${other.frontend.name}" ` +
          `(${other.path}) are both on "${bind}" (frontends share an address only to route ` +
          "by protocol, TLS server name, ALPN or HTTP Host: give each protocol, sni, alpn or " +
          "http_host, all but one at most)",
      );
    }
    const key = frontend.sni !== undefined
      ? "sni"
      : frontend.alpn !== undefined
      ? "alpn"
      : frontend.httpHost !== undefined
      ? "http_host"
      : "protocol";
    fail(
      `${path}.${key}`,
      `would take the same connections as ${other.path} ("${other.frontend.name}"), which ` +
        `shares its address "${bind}": ${why}`,
    );
  }
  for (const [key, read] of LISTENER_KEYS) {
    if (read(frontend) !== read(first.frontend)) {
      fail(
        `${path}.${key}`,
        `differs from ${first.path}, which shares its address "${bind}": ` +
          "frontends on one address read the connection the same way before choosing",
      );
    }
  }
}

/**
 * Whether a socket on `wildcard` takes the same port on `host` as well.
 * `::` does for every address, IPv4 included (dual-stack sockets, Linux's
 * default); `0.0.0.0` does for IPv4 and for names, which may resolve to
 * IPv4, but not for a given IPv6 address: 0.0.0.0:7070 and [::1]:7070 bind
 * side by side.
 */
function covers(wildcard: string, host: string): boolean {
  if (!isWildcardHost(wildcard)) return false;
  return wildcard.includes(":") || !host.includes(":");
}
