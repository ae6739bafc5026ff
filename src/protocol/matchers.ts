/**
 * The precedence table of the frontends sharing one address: which one takes
 * a connection, given what its first bytes said, and which two a config may
 * not hold because they would take some connection equally. Shared by the
 * listener (to choose) and config validation (to reject ties), on plain data.
 *
 * @module
 */
import type { Facts, Protocol, Wanted } from "./detect.ts";
import { matchesServerName } from "./server_name.ts";

/** A frontend's matcher keys, as configured (an empty list matches no connection). */
export interface Matcher {
  /** `protocol`: the protocol its connections speak. */
  readonly protocol?: Protocol;
  /** `sni`: TLS server names or `*.` wildcards (implies tls). */
  readonly sni?: readonly string[];
  /** `alpn`: TLS application protocols, one of which the client must offer (implies tls). */
  readonly alpn?: readonly string[];
  /** `http_host`: Host names or `*.` wildcards (implies http). */
  readonly httpHost?: readonly string[];
}

/**
 * The protocol a matcher takes: its explicit `protocol`, else tls for `sni`
 * or `alpn`, http for `http_host`.
 *
 * @param m the matcher
 * @returns the protocol, or undefined for the fallback (no keys at all)
 */
export function protocolOf(m: Matcher): Protocol | undefined {
  if (m.protocol !== undefined) return m.protocol;
  if (m.sni !== undefined || m.alpn !== undefined) return "tls";
  if (m.httpHost !== undefined) return "http";
  return undefined;
}

/**
 * What detection must look for so the matchers can choose: each protocol
 * some matcher takes; HTTP on to the Host header only when some matcher
 * lists `http_host`, else the request line alone.
 *
 * @param matchers the frontends' matchers on one address
 * @returns the protocols to detect
 */
export function wantedBy(matchers: readonly Matcher[]): Wanted {
  const protocols = new Set(matchers.map(protocolOf));
  return {
    tls: protocols.has("tls"),
    http: matchers.some((m) => m.httpHost !== undefined)
      ? "host"
      : protocols.has("http")
      ? "line"
      : "no",
    ssh: protocols.has("ssh"),
    postgres: protocols.has("postgres"),
  };
}

/** How well a name matches a list: exact beats any wildcard, a longer wildcard a shorter one; -1: no match. */
function _nameRank(patterns: readonly string[], name: string | undefined): number {
  if (name === undefined) return -1;
  const lower = name.toLowerCase();
  let best = -1;
  for (const raw of patterns) {
    const pattern = raw.toLowerCase();
    if (!matchesServerName(pattern, lower)) continue;
    best = Math.max(best, pattern.startsWith("*.") ? pattern.length : Number.MAX_SAFE_INTEGER);
  }
  return best;
}

/**
 * A matcher's rank for a connection, compared element by element (higher is
 * better), or undefined when it does not take the connection: the name level
 * (exact, wildcard by length, none), then a matching `alpn` over none, then
 * the client's preference among the ALPN names offered.
 */
function _rank(m: Matcher, facts: Facts): number[] | undefined {
  if (facts.protocol === undefined || protocolOf(m) !== facts.protocol) return undefined;
  let name = 0;
  let alpn = 0;
  let preference = 0;
  if (facts.protocol === "tls") {
    if (m.httpHost !== undefined) return undefined;
    if (m.sni !== undefined) {
      name = _nameRank(m.sni, facts.serverName);
      if (name < 0) return undefined;
    }
    if (m.alpn !== undefined) {
      const offered = facts.alpn ?? [];
      const first = offered.findIndex((protocol) => m.alpn!.includes(protocol));
      if (first < 0) return undefined;
      alpn = 1;
      preference = -first;
    }
  } else if (facts.protocol === "http") {
    if (m.sni !== undefined || m.alpn !== undefined) return undefined;
    if (m.httpHost !== undefined) {
      name = _nameRank(m.httpHost, facts.httpHost);
      if (name < 0) return undefined;
    }
  } else if (m.sni !== undefined || m.alpn !== undefined || m.httpHost !== undefined) {
    return undefined;
  }
  return [name, alpn, preference];
}

function _better(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}

/**
 * The frontend that takes a connection, by the precedence table. TLS:
 * `sni` exact + `alpn` > `sni` exact > `sni` wildcard + `alpn` > `sni`
 * wildcard > `alpn` > `protocol = "tls"`, a longer wildcard before a shorter
 * one, and among frontends at one level with different `alpn` lists the
 * client's order decides (the first name it offers that some frontend
 * lists). HTTP: `http_host` exact > wildcard (longer first) > `protocol =
 * "http"`. SSH and PostgreSQL: `protocol` only. Host names compare
 * lowercase, ALPN names exactly. Equal ranks (a config error) go to the
 * first in order.
 *
 * @param matchers the frontends' matchers on one address, in config order
 * @param facts what detection found
 * @returns the best match's index, else the fallback's (the first matcher with no keys), else undefined
 */
export function choose(matchers: readonly Matcher[], facts: Facts): number | undefined {
  let best: number | undefined;
  let bestRank: number[] | undefined;
  for (let i = 0; i < matchers.length; i++) {
    const rank = _rank(matchers[i]!, facts);
    if (rank === undefined) continue;
    if (bestRank === undefined || _better(rank, bestRank)) {
      best = i;
      bestRank = rank;
    }
  }
  if (best !== undefined) return best;
  const fallback = matchers.findIndex((m) => protocolOf(m) === undefined);
  return fallback < 0 ? undefined : fallback;
}

/** The lowercase patterns two lists share, in the first list's order. */
function _shared(a: readonly string[], b: readonly string[], lower: boolean): string[] {
  const norm = (s: string) => lower ? s.toLowerCase() : s;
  const other = new Set(b.map(norm));
  return [...new Set(a.map(norm))].filter((s) => other.has(s));
}

/** Why two matchers of one protocol tie, or undefined when no connection ranks them equally. */
function _tie(a: Matcher, b: Matcher, protocol: Protocol): string | undefined {
  const keys = (m: Matcher) =>
    [m.sni && "sni", m.alpn && "alpn", m.httpHost && "http_host"].filter(Boolean).join(", ");
  if (protocol === "ssh" || protocol === "postgres") {
    return keys(a) === "" && keys(b) === ""
      ? `both take every ${protocol} connection (protocol = "${protocol}" alone)`
      : undefined;
  }
  if (protocol === "http") {
    if ((a.httpHost === undefined) !== (b.httpHost === undefined)) return undefined;
    if (a.httpHost === undefined) {
      return `both take every http connection (protocol = "http" alone)`;
    }
    const host = _shared(a.httpHost, b.httpHost!, true)[0];
    return host === undefined ? undefined : `both list http_host "${host}"`;
  }
  if ((a.sni === undefined) !== (b.sni === undefined)) return undefined;
  if ((a.alpn === undefined) !== (b.alpn === undefined)) return undefined;
  let name = "";
  if (a.sni !== undefined) {
    const shared = _shared(a.sni, b.sni!, true)[0];
    if (shared === undefined) return undefined;
    name = `sni "${shared}"`;
  }
  if (a.alpn !== undefined) {
    const shared = _shared(a.alpn, b.alpn!, false)[0];
    if (shared === undefined) return undefined;
    return name === ""
      ? `both list alpn "${shared}" without sni`
      : `both list ${name} with alpn "${shared}"`;
  }
  return name === ""
    ? `both take every tls connection (protocol = "tls" without sni or alpn)`
    : `both list ${name} without alpn`;
}

/**
 * The pairs of matchers that would take some connection equally, which a
 * config must not hold: the same exact name (or the same wildcard) in two
 * frontends at the same alpn level (both without `alpn`, or sharing an alpn
 * name), two alpn-only frontends sharing a name, two `protocol = X` without
 * more keys, two fallbacks. Different `alpn` lists without a shared name
 * are no tie: the client's order decides.
 *
 * @param matchers the frontends' matchers on one address, in config order
 * @returns [first index, second index, one line saying why] for each pair
 */
export function ties(matchers: readonly Matcher[]): [number, number, string][] {
  const found: [number, number, string][] = [];
  for (let i = 0; i < matchers.length; i++) {
    for (let j = i + 1; j < matchers.length; j++) {
      const a = matchers[i]!;
      const b = matchers[j]!;
      const protocol = protocolOf(a);
      if (protocol !== protocolOf(b)) continue;
      const why = protocol === undefined
        ? "both are fallbacks (no protocol, sni, alpn or http_host)"
        : _tie(a, b, protocol);
      if (why !== undefined) found.push([i, j, why]);
    }
  }
  return found;
}
