/**
 * What each key of `[frontend.health]` means, for people: TCP, send/expect,
 * HTTP and TLS probes, agent checks and what happens when a backend goes
 * down. Part of schema_docs.ts's table, kept apart for its size.
 *
 * @module
 */
import type { KeyDoc } from "./key_doc.ts";

/** The documentation of the `[frontend.health]` keys, by path. */
export const HEALTH_KEY_DOCS: Readonly<Record<string, KeyDoc>> = {
  "frontend.health": {
    key: "[frontend.health]",
    type: "table",
    default: "none: passive checks only",
    example: "`[frontend.health]`",
    meaning: "active health checks, keys below",
  },
  "frontend.health.interval": {
    type: "duration",
    example: '`"5s"`',
    meaning:
      'time between probes of one backend (probes of different backends are staggered), at least `"10ms"`',
  },
  "frontend.health.timeout": {
    type: "duration",
    example: '`"500ms"`',
    meaning: "how long a probe may take",
  },
  "frontend.health.fall": {
    type: "whole number",
    example: "`2`",
    meaning: "failures in a row (probes or real connects) that take a backend down",
  },
  "frontend.health.rise": {
    type: "whole number",
    example: "`3`",
    meaning: "successful probes in a row that bring it back",
  },
  "frontend.health.send": {
    type: "string",
    default: "none",
    example: '`"PING\\r\\n"`',
    meaning:
      'text a probe sends once connected, e.g. `"PING\\r\\n"`; on a UDP frontend without `port`, the datagram each probe sends, one byte per character (U+0000-U+00FF: write binary as `"\\u00XX"`, e.g. a DNS query)',
  },
  "frontend.health.expect": {
    type: "string",
    default: "none",
    example: '`"+PONG"`',
    meaning:
      'text the probe must receive, e.g. `"+PONG"` (like HAProxy\'s tcp-check); on a UDP frontend without `port`, bytes the reply must hold (as `send`); without it a reply, or silence for `timeout`, counts as up and only an ICMP port unreachable fails (where the runtime reports one)',
  },
  "frontend.health.agent_port": {
    type: "whole number 1-65535",
    default: "none",
    example: "`9777`",
    meaning:
      "poll an agent on this port of each backend's host and read one line, HAProxy's agent-check format: `up`, `down`, `drain`, `maint`, `ready`, `NN%` (share of the weight; `0%` drains), several words in one line (`75% drain`); each answer is whole (words it leaves out mean up, ready, 100%); an agent that does not answer changes nothing",
  },
  "frontend.health.agent_interval": {
    type: "duration",
    default: "the health `interval`",
    example: '`"1s"`',
    meaning: "time between agent polls of one backend; each poll ends within the health `timeout`",
  },
  "frontend.health.http_path": {
    type: "string",
    default: "none: TCP checks",
    example: '`"/healthz"`',
    meaning:
      "makes each probe an HTTP/1.1 request for this path (`Host`, `Connection: close`, `User-Agent: mini-balancer/VERSION`), up by its status line (like HAProxy's `option httpchk`); not with `send`/`expect`; see [HTTP health checks](operations.md#http-health-checks)",
  },
  "frontend.health.http_method": {
    type: "string",
    default: '`"GET"`',
    example: '`"HEAD"`',
    meaning: "the method of HTTP probes (needs `http_path`)",
  },
  "frontend.health.http_host": {
    type: "string",
    default: "the backend's address as written",
    example: '`"db.internal"`',
    meaning: "the `Host` header of HTTP probes (needs `http_path`)",
  },
  "frontend.health.http_status": {
    type: "string or array of strings",
    default: '`"200-399"`',
    example: '`["200", "204-206"]`',
    meaning:
      "the status codes that count as up: a code, a range, or a list of them (needs `http_path`); any other answer fails the probe, quoting its status line",
  },
  "frontend.health.port": {
    type: "whole number 1-65535",
    default: "the backend's port",
    example: "`8008`",
    meaning:
      "probe this port of each backend's host instead (Patroni's REST API beside PostgreSQL), for TCP, `send`/`expect` and HTTP checks; on a UDP frontend, it makes the checks TCP (or HTTP, TLS) to this port, which `http_path` and `tls` need there",
  },
  "frontend.health.tls": {
    type: "boolean",
    default: "`false`",
    example: "`true`",
    meaning:
      "probes (TCP, `send`/`expect` and HTTP) speak TLS to the probe port, the handshake within `timeout`; SNI is `http_host` when set, else the backend's host name (none for an IP address); the certificate is not verified unless `tls_verify = true`",
  },
  "frontend.health.tls_verify": {
    type: "boolean",
    default: "`false`",
    example: "`true`",
    meaning: "verify the probe port's certificate against the system's CAs (needs `tls = true`)",
  },
  "frontend.health.on_down": {
    type: '`"keep"` or `"close_sessions"`',
    default: '`"keep"`',
    example: '`"close_sessions"`',
    meaning:
      "what happens to a backend's open connections when it is marked down (by probes or failed connects): kept, or closed (FIN to the client, RST with `when_all_down = \"reset\"`), logged once with their count (HAProxy's `on-marked-down shutdown-sessions`)",
  },
};
