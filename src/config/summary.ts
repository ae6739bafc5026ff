/**
 * A config in a few lines for a person: what `mini-balancer check` prints
 * after a config loads (each frontend, its address, algorithm and backends),
 * and its verdict, printed last.
 *
 * @module
 */
import { formatAddress, formatBindAddress } from "../address/address.ts";
import { type BackendConfig, type Config, discovers, type FrontendConfig } from "./config.ts";
import { formatHttpStatus } from "./http_status.ts";

/** A frontend's edge settings in a line, or nothing when it has none. */
function edgeLine(frontend: FrontendConfig): string[] {
  const traits: string[] = [];
  const matcher = matcherText(frontend);
  if (matcher !== undefined) traits.push(matcher);
  const tls = frontend.tls;
  if (tls !== undefined) {
    const names = tls.certificates.map((c) => c.names.join(" ") || c.certFile);
    traits.push(`terminates TLS (${names.join("; ")})`);
  }
  if (frontend.acceptProxy) {
    traits.push(`accepts PROXY headers from ${frontend.trusted ?? "its Unix socket's peers"}`);
  }
  if (frontend.allow !== undefined) traits.push(`allows ${frontend.allow}`);
  if (frontend.deny !== undefined) traits.push(`denies ${frontend.deny}`);
  if (frontend.connectionRatePerClient !== undefined) {
    const what = frontend.transport === "udp" ? "new flows" : "connections";
    traits.push(`${frontend.connectionRatePerClient.text} ${what} per client`);
  }
  if (frontend.maxBytesPerSecond !== undefined) {
    traits.push(`${frontend.maxBytesPerSecond} bytes/s per connection and direction`);
  }
  return traits.length === 0 ? [] : [`  ${traits.join("; ")}`];
}

/**
 * What a frontend takes on a shared address, in words: its protocol and
 * the names it is chosen by; undefined for a fallback that shares nothing.
 */
function matcherText(frontend: FrontendConfig, shared = false): string | undefined {
  const { protocol, sni, alpn, httpHost, detectTimeoutMs } = frontend;
  if (protocol === undefined) {
    if (!shared && detectTimeoutMs === undefined) return undefined;
    const silent = detectTimeoutMs === undefined
      ? ""
      : `, and clients silent for ${formatMs(detectTimeoutMs)}`;
    return `takes what no other frontend on its address takes${silent}`;
  }
  const parts = [`takes ${protocol === "tls" ? "TLS" : protocol === "http" ? "HTTP" : protocol}`];
  if (sni !== undefined) parts.push(`for ${sni.join(", ")}`);
  if (alpn !== undefined) parts.push(`offering ALPN ${alpn.join(", ")}`);
  if (httpHost !== undefined) parts.push(`for Host ${httpHost.join(", ")}`);
  return parts.join(" ");
}

/** A duration as a config writes it: "250ms", "1s", "5m". */
function formatMs(ms: number): string {
  if (ms >= 60_000 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** One backend's line: its address, its name when it has one, and what differs from defaults. */
function backendLine(backend: BackendConfig): string {
  const traits = [`weight ${backend.weight}`];
  if (backend.maxConnections !== undefined) {
    traits.push(`max_connections ${backend.maxConnections}`);
  }
  if (backend.backup) traits.push("backup");
  if (backend.sendProxy !== undefined) traits.push(`send_proxy ${backend.sendProxy}`);
  if (backend.slowStartMs !== undefined) traits.push(`slow_start ${formatMs(backend.slowStartMs)}`);
  const name = backend.name === backend.address ? "" : `${backend.name} = `;
  return `  ${name}${backend.address} (${traits.join(", ")})`;
}

/**
 * The verdict `check` prints last, once everything has passed.
 *
 * @param config the loaded config
 * @param file the file it came from, as given
 * @returns `config "lb.toml" is valid: 2 frontends`
 */
export function validLine(config: Config, file: string): string {
  const count = config.frontends.length;
  const workers = config.workers > 1 ? `, ${config.workers} workers` : "";
  return `config "${file}" is valid: ${count} frontend${count === 1 ? "" : "s"}${workers}`;
}

/** What a frontend's active health checks probe, after "active health checks", and on_down. */
function healthText({ health }: FrontendConfig): string {
  const parts: string[] = [];
  if (health.udp) {
    // Sizes, not the bytes: a DNS query in \u00XX escapes reads as noise.
    const bytes = (text: string) => `${text.length} byte${text.length === 1 ? "" : "s"}`;
    const send = health.send === undefined ? "" : ` of ${bytes(health.send)}`;
    const expect = health.expect === undefined
      ? ", up unless the port is unreachable"
      : `, up on a reply holding expect (${bytes(health.expect)})`;
    parts.push(`UDP datagrams${send}${expect}`);
  }
  const http = health.http;
  if (http !== undefined) {
    parts.push(
      `HTTP ${http.method} ${http.path}${
        http.host === undefined ? "" : ` (Host ${http.host})`
      } up on ${formatHttpStatus(http.status)}`,
    );
  }
  if (health.port !== undefined) parts.push(`on port ${health.port}`);
  if (health.tls) parts.push(`over TLS${health.tlsVerify ? " (certificate verified)" : ""}`);
  const text = parts.length === 0 ? "" : `: ${parts.join(" ")}`;
  return health.onDown === "close_sessions"
    ? `${text}; a backend marked down has its connections closed`
    : text;
}

/** What ends a UDP frontend's flows, after its checks; nothing for TCP. */
function flowText({ transport, idleTimeoutMs, responses }: FrontendConfig): string {
  if (transport !== "udp") return "";
  const idle = idleTimeoutMs === undefined ? [] : [`${formatMs(idleTimeoutMs)} idle`];
  const replies = responses === undefined
    ? []
    : [`${responses} response${responses === 1 ? "" : "s"}`];
  return `, a flow ends after ${[...idle, ...replies].join(" or ")}`;
}

/**
 * Describes a valid config, a frontend to a paragraph (the verdict is
 * {@linkcode validLine}'s).
 *
 * @param config the loaded config
 * @returns the lines to print
 */
export function summarizeConfig(config: Config): string[] {
  const lines: string[] = [];
  // Port 0 asks for a port each time: such frontends never share one.
  const keyOf = ({ bindOn, transport }: FrontendConfig) =>
    bindOn.port === 0 && bindOn.path === undefined
      ? undefined
      : formatBindAddress(bindOn, transport);
  const shared = new Map<string, FrontendConfig[]>();
  for (const frontend of config.frontends) {
    const key = keyOf(frontend);
    if (key !== undefined) shared.set(key, [...shared.get(key) ?? [], frontend]);
  }
  for (const frontend of config.frontends) {
    const key = keyOf(frontend);
    const members = key === undefined ? [frontend] : shared.get(key)!;
    if (members.length > 1 && members[0] === frontend) {
      lines.push(
        `address ${key} is shared by ${members.length} frontends, chosen by the first bytes: ` +
          members.map((f) => `"${f.name}" ${matcherText(f, true)}`).join("; "),
      );
    }
    const backends = frontend.backends.length;
    const { agentPort, agentIntervalMs } = frontend.health;
    const checks = (frontend.health.active ? `, active health checks${healthText(frontend)}` : "") +
      (agentPort === undefined
        ? ""
        : `, agent checks on port ${agentPort} every ${formatMs(agentIntervalMs!)}`) +
      (frontend.slowStartMs === undefined ? "" : `, slow start ${formatMs(frontend.slowStartMs)}`) +
      flowText(frontend);
    const srv = frontend.discover === undefined ? "" : ` and srv:${frontend.discover}`;
    const names = !discovers(frontend)
      ? ""
      : `${srv}, names resolved by ${
        frontend.resolver === undefined ? "the system" : formatAddress(frontend.resolver)
      } every ${formatMs(frontend.minTtlMs)} to ${formatMs(frontend.maxTtlMs)} as TTLs say`;
    lines.push(
      `frontend "${frontend.name}" on ${formatBindAddress(frontend.bindOn, frontend.transport)}: ` +
        `${frontend.algorithm}${
          frontend.hashBalanceFactor === undefined
            ? ""
            : ` (hash_balance_factor ${frontend.hashBalanceFactor})`
        } over ${backends} backend${backends === 1 ? "" : "s"}${names}${checks}`,
      ...edgeLine(frontend),
      ...frontend.backends.map(backendLine),
    );
  }
  const admin = config.admin;
  if (admin !== undefined) {
    const token = admin.tokenFile !== undefined
      ? `the token in ${admin.tokenFile}${
        openTokenFile(admin.tokenFileMode) ? " (readable by group or others: chmod 600 it)" : ""
      }`
      : admin.token !== undefined
      ? "a token"
      : "no token: read-only";
    const hosts = admin.allowedHosts.length === 0
      ? ""
      : `, also for Host ${admin.allowedHosts.join(", ")}`;
    lines.push(`admin listener on ${formatAddress(admin.bindOn)}, ${token}${hosts}`);
  }
  return lines;
}

/**
 * What `check` found for a frontend's names: each name and the backends it
 * gave, or why it gave none.
 *
 * @param frontend the frontend's name
 * @param found each name, its backends and why it failed (when it did)
 * @returns the lines to print
 */
export function discoveryLines(
  frontend: string,
  found: readonly { name: string; backends: readonly BackendConfig[]; failing?: string }[],
): string[] {
  return found.flatMap(({ name, backends, failing }) => {
    const n = backends.length;
    const head = failing === undefined
      ? `frontend "${frontend}": ${name} resolved to ${n} backend${n === 1 ? "" : "s"}`
      : `frontend "${frontend}": ${name} did not resolve (${failing}); it is asked again while serving`;
    return [head, ...backends.map(backendLine)];
  });
}

/**
 * Whether a token file's permissions let its group or others in (anything
 * in 0o077), as ssh asks of a private key.
 *
 * @param mode the file's permission bits, if known
 * @returns true when someone besides the owner may read or change it
 */
export function openTokenFile(mode: number | undefined): boolean {
  return mode !== undefined && (mode & 0o077) !== 0;
}
