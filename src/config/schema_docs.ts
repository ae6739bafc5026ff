/**
 * What each config key means, for people: the type as the file writes it,
 * an example and a sentence, keyed by the key's path (`frontend.tls.cert`,
 * `frontend.backend[N].weight`). The schema (schema.ts) stays the source of
 * the keys and of every fixed default; this table adds only what the schema
 * cannot say (a default that depends on other keys, a key that is required).
 * `scripts/config-docs.ts` joins the two into docs/configuration.md, and a
 * test fails when a schema key has no entry here, an entry names no key, or
 * the page differs from what the script writes.
 *
 * @module
 */
import type { KeyDoc } from "./key_doc.ts";
import { HEALTH_KEY_DOCS } from "./schema_docs_health.ts";

/** Every config key's documentation, by path, in no particular order (the schema orders the page). */
export const KEY_DOCS: Readonly<Record<string, KeyDoc>> = {
  "frontend": {
    key: "[frontend]",
    type: "table",
    default: "required, unless there are `[[frontends]]`",
    example: "`[frontend]`",
    meaning: "the listening side",
  },
  "frontend.name": {
    type: "string",
    example: '`"web"`',
    meaning: "the frontend's name in logs (letters, digits, `_`, `.`, `-`)",
  },
  "frontends": {
    key: "[[frontends]]",
    type: "array of tables",
    default: "none",
    example: "`[[frontends]]`",
    meaning:
      "several named frontends, instead of or beside `[frontend]` (see [Several frontends](#several-frontends)); each takes every `frontend.*` key, and its backends are `[[frontends.backend]]`",
  },
  "frontends[N].name": {
    type: "string",
    default: "required in `[[frontends]]`",
    example: '`"web"`',
    meaning:
      "the name of a frontend in the several-frontends form (below); it takes every `frontend.*` key too",
  },
  "frontend.bind_on": {
    type: '`"host:port"`, `"udp:host:port"` or `"unix:path"`',
    default: "required",
    example: '`"0.0.0.0:7070"`',
    meaning:
      "where to listen; port 0 takes a free port; a Unix socket's stale file is replaced when nothing listens on it, and removed at a clean stop; `udp:` makes a UDP frontend, whose backends are reached over UDP (see [UDP](udp.md))",
  },
  "frontend.responses": {
    type: "whole number 1-1000000",
    default: "none: idle_timeout and max_lifetime end a flow",
    example: "`1`",
    meaning:
      "UDP frontends only: a flow (one client address and port) ends once its backend has sent this many datagrams back, as nginx's `proxy_responses` (DNS: `1`, so a resolver's queries free their sockets at once)",
  },
  "frontend.connect_timeout": {
    type: "duration",
    example: '`"2s"`',
    meaning: "how long a backend may take to accept a connection before the client is closed",
  },
  "frontend.idle_timeout": {
    type: "duration",
    default: 'none; `"30s"` on a UDP frontend',
    example: '`"10m"`',
    meaning:
      "close both sides of a connection that moved no bytes either way for this long; on a UDP frontend, end a flow that moved no datagram either way for this long",
  },
  "frontend.max_lifetime": {
    type: "duration",
    default: "none",
    example: '`"1h"`',
    meaning: "close both sides of a connection this long after it was accepted",
  },
  "frontend.log_interval": {
    type: "duration",
    default: "none",
    example: '`"60s"`',
    meaning:
      "log `connection in progress` at INFO every this long while a connection is open, with its bytes each way so far and its age (see [Operations](operations.md#long-connections)); TCP frontends only",
  },
  "frontend.algorithm": {
    type: "string",
    example: '`"least_connections"`',
    meaning: "how backends are chosen, see below",
  },
  "frontend.hash_balance_factor": {
    type: "number above 1, at most 100",
    default: "none: no bound",
    example: "`1.25`",
    meaning:
      'only with `algorithm = "source_hash"`: bounded loads, no backend takes a new client while it holds ceil(factor × average) connections or more; the client goes on along the ring (see [Algorithms](#algorithms))',
  },
  "frontend.retries": {
    type: "whole number 0-100",
    default: "backends − 1; 3 with discovered backends",
    example: "`1`",
    meaning:
      "how many other backends a failed connect (refused, unreachable, timed out) is retried on before the client is closed; the default tries each backend once",
  },
  "frontend.max_connections": {
    type: "whole number",
    default: "none",
    example: "`10000`",
    meaning:
      "most client connections served at once; more wait in the queue, unread; on a UDP frontend, most open flows: a datagram that would open one more is dropped",
  },
  "frontend.queue_timeout": {
    type: "duration",
    default: "`connect_timeout`",
    example: '`"3s"`',
    meaning:
      'how long a connection waits in the queue (frontend full, or every backend full) before it is turned away; `"0s"` turns it away at once',
  },
  "frontend.max_connections_per_client": {
    type: "whole number",
    default: "none",
    example: "`20`",
    meaning:
      "most connections at once from one client IP address; more are closed at once; on a UDP frontend, open flows (the datagram that would open one more is dropped)",
  },
  "frontend.when_all_down": {
    type: '`"close"` or `"reset"`',
    example: '`"reset"`',
    meaning:
      "how a client that cannot be served is turned away (no backend up, every connect failed, queue timeout, a limit): FIN, or RST where the runtime can send one (see below the table)",
  },
  "frontend.slow_start": {
    type: "duration",
    default: "none",
    example: '`"30s"`',
    meaning:
      "a backend that comes up (after being down, or added by a reload, discovery or the admin API) ramps linearly from 1/20 of its weight to all of it over this time, for every algorithm but `first` and `source_hash`; not at process start (see [Agent checks and slow start](operations.md#agent-checks-and-slow-start))",
  },
  "frontend.accept_proxy": {
    type: "boolean",
    example: "`true`",
    meaning:
      "a connection from a `trusted` address must start with a PROXY protocol header (v1 or v2, detected); its client address stands for the connection everywhere (logs, metrics, `source_hash`, limits, allow/deny, `send_proxy`)",
  },
  "frontend.trusted": {
    type: "array of IP ranges",
    default: "required with `accept_proxy` (not on a Unix socket)",
    example: '`["10.0.0.0/8"]`',
    meaning: "the proxies allowed to send PROXY headers; any other address is closed",
  },
  "frontend.header_timeout": {
    type: "duration",
    example: '`"2s"`',
    meaning:
      "how long a client may take for what comes before a backend is chosen (the PROXY header, the TLS ClientHello and handshake); then it is closed",
  },
  "frontend.sni": {
    type: "array of server names",
    default: "none",
    example: '`["api.example.com", "*.example.com"]`',
    meaning:
      'take TLS clients asking for these names, without terminating TLS (implies `protocol = "tls"`); on a shared `bind_on` an exact name beats a wildcard, a longer wildcard a shorter one (see [one port, many protocols](edge.md#one-port-many-protocols))',
  },
  "frontend.protocol": {
    type: '`"tls"`, `"http"`, `"ssh"` or `"postgres"`',
    default: "implied by `sni`/`alpn` (tls) or `http_host` (http); none: the fallback",
    example: '`"ssh"`',
    meaning:
      "take the connections whose first bytes are this protocol's (a TLS ClientHello, an HTTP/1.x request line, `SSH-2.0-`, a PostgreSQL SSLRequest, GSSENCRequest or StartupMessage), on a `bind_on` shared with other frontends; the frontend without `protocol`, `sni`, `alpn` or `http_host` takes the rest",
  },
  "frontend.alpn": {
    type: "array of ALPN protocol names",
    default: "none",
    example: '`["h2"]`',
    meaning:
      'take TLS clients that offer one of these protocols (implies `protocol = "tls"`); between frontends the client\'s own preference order decides',
  },
  "frontend.http_host": {
    type: "array of host names",
    default: "none",
    example: '`["example.com", "*.example.com"]`',
    meaning:
      'take HTTP/1 requests whose `Host` header (port stripped, any case) is one of these, read from the request head up to 8 KiB and forwarded untouched (implies `protocol = "http"`)',
  },
  "frontend.detect_timeout": {
    type: "duration",
    default: "none: a silent client is closed at `header_timeout`",
    example: '`"300ms"`',
    meaning:
      "on the fallback of a shared `bind_on`: a client that has sent nothing for this long is given to it, for protocols where the server speaks first (SMTP, MySQL, FTP); shorter than `header_timeout`",
  },
  "frontend.tls": {
    type: "table, or array of tables",
    default: "none",
    example: '`{ cert = "cert.pem", key = "key.pem" }`',
    meaning:
      "terminate TLS and forward plaintext; several certificates (`[[frontend.tls]]`) are chosen by server name, the first for any other",
  },
  "frontend.tls.cert": {
    type: "path (PEM)",
    default: "required",
    example: '`"/etc/mb/api.pem"`',
    meaning:
      "the certificate chain and its private key, relative to the config file's folder; read and checked at load and at every reload",
  },
  "frontend.tls.key": {
    type: "path (PEM)",
    default: "required",
    example: '`"/etc/mb/api.pem"`',
    meaning:
      "the private key of `cert`; the certificate chain and its private key, relative to the config file's folder; read and checked at load and at every reload",
  },
  "frontend.tls.names": {
    type: "array of server names",
    default: "the certificate's DNS names",
    example: '`["api.example.com"]`',
    meaning: "the names a certificate is served for",
  },
  "frontend.allow": {
    type: "array of IP ranges",
    default: "none: everyone",
    example: '`["10.0.0.0/8", "::1"]`',
    meaning: "when set, only these clients are served",
  },
  "frontend.deny": {
    type: "array of IP ranges",
    default: "none",
    example: '`["203.0.113.0/24"]`',
    meaning:
      'these clients are closed before any backend is touched (logged at INFO, counted in `refusals_total{reason="denied"}`); deny wins over allow',
  },
  "frontend.connection_rate_per_client": {
    type: '`"N/s"` or `"N/m"`',
    default: "none",
    example: '`"20/s"`',
    meaning:
      "new connections one client address may open (a token bucket of N, refilled N per period); more are closed at accept; on a UDP frontend, new flows (more are dropped)",
  },
  "frontend.max_bytes_per_second": {
    type: "size",
    default: "none",
    example: '`"10MiB"`',
    meaning:
      "bytes each connection may move per second in each direction, paced by a token bucket of a tenth of a second's worth (reads pause while bytes wait); `B`, `KB`, `MB`, `GB`, `KiB`, `MiB`, `GiB` or a number, at least 1KiB",
  },
  "frontend.unix_mode": {
    type: "octal string",
    default: "the umask's",
    example: '`"0660"`',
    meaning: "permissions of the socket file of a `unix:` `bind_on`",
  },
  "frontend.backend": {
    key: "[[frontend.backend]]",
    type: "array of tables",
    default: "at least one, or none with `discover`",
    example: "`[[frontend.backend]]`",
    meaning: "the backends, in round-robin order",
  },
  "frontend.backend[N].name": {
    type: "string",
    default: "its address",
    example: '`"app-1"`',
    meaning:
      "a name for logs and for source_hash's ring (naming backends keeps clients in place when an address changes); unique in its frontend; the addresses of a host name are named `NAME#ADDRESS`",
  },
  "frontend.backend[N].forward_to": {
    type: '`"host:port"` or `"unix:path"`',
    default: "required",
    example: '`"app-1.internal:8080"`',
    meaning:
      "where connections are forwarded; a host name is a backend per address it resolves to, followed as DNS changes (see [Service discovery](discovery.md)); on a UDP frontend, where flows' datagrams go, over UDP (`host:port` only)",
  },
  "frontend.backend[N].weight": {
    type: "whole number 1-256",
    example: "`3`",
    meaning: "the backend's share for the weighted algorithms",
  },
  "frontend.backend[N].max_connections": {
    type: "whole number",
    default: "none",
    example: "`500`",
    meaning:
      "most connections open to this backend; a full backend is passed over for the next one, and with every backend full new clients wait in the queue",
  },
  "frontend.backend[N].backup": {
    type: "boolean",
    example: "`true`",
    meaning: "used only while every primary (non-backup) backend is down",
  },
  "frontend.backend[N].send_proxy": {
    type: '`"v1"` or `"v2"`',
    default: "none",
    example: '`"v2"`',
    meaning:
      "write a PROXY protocol header (the client's and the frontend's addresses) before any client byte",
  },
  "frontend.backend[N].slow_start": {
    type: "duration",
    default: "the frontend's `slow_start`",
    example: '`"10s"`',
    meaning: "this backend's own slow start, which wins over the frontend's",
  },
  "frontend.discover": {
    type: '`"srv:NAME"`',
    default: "none",
    example: '`"srv:_web._tcp.service.consul"`',
    meaning:
      "backends from the SRV records of NAME, beside any `[[frontend.backend]]`: target and port, the record's weight, the lowest priority as primaries and the others as backups",
  },
  "frontend.resolver": {
    type: '`"IP:port"`',
    default: "the top-level `resolver`, else the system's",
    example: '`"10.0.0.2:53"`',
    meaning: "the DNS server this frontend's host names and `discover` are asked of, over TCP",
  },
  "frontend.min_ttl": {
    type: "duration",
    example: '`"5s"`',
    meaning: "the shortest time between two resolutions of a name, whatever its TTL",
  },
  "frontend.max_ttl": {
    type: "duration",
    example: '`"30s"`',
    meaning:
      "the longest time between two resolutions of a name, whatever its TTL (the system resolver's answers count as 30 s)",
  },
  ...HEALTH_KEY_DOCS,
  "workers": {
    type: 'whole number 1-256 or `"auto"`',
    example: '`"auto"`',
    meaning:
      'worker processes under one supervisor, each listening on every frontend with SO_REUSEPORT (the kernel spreads connections); `"auto"` is one per core; see [Several cores](operations.md#several-cores-workers)',
  },
  "resolver": {
    type: '`"IP:port"`',
    default: "none: the system's resolver",
    example: '`"127.0.0.1:8600"`',
    meaning:
      "the DNS server of every frontend that names none (see [Service discovery](discovery.md))",
  },
  "admin": {
    key: "[admin]",
    type: "table",
    default: "none: no admin listener",
    example: "`[admin]`",
    meaning:
      "the admin listener: metrics, status, dashboard and the operator's API (see [Operations](operations.md#the-admin-listener))",
  },
  "admin.bind_on": {
    type: '`"host:port"`',
    example: '`"127.0.0.1:9901"`',
    meaning:
      "where the admin listener listens; not a frontend's address; a reload moves it (the new address is bound before the old one closes)",
  },
  "admin.token": {
    type: "string, 16+ characters",
    default: "none: changes answer 403",
    example: '`"…a long secret…"`',
    meaning:
      "the bearer token the `POST` endpoints need; never shown in an error, a log line or `check`'s output",
  },
  "admin.token_file": {
    type: "path",
    default: "none",
    example: '`"/etc/mb/token"`',
    meaning:
      "a file whose first line is the token (instead of `token`), read at start, by `check` and at every reload; a WARN line at start when its group or others may read it (`chmod 600` it)",
  },
  "admin.allowed_hosts": {
    type: "array of host names",
    example: '`["lb.internal"]`',
    meaning:
      "the names a client may put in `Host` besides an IP address and `localhost`; any other `Host` gets 403 (a page rebound by DNS to this address reads nothing)",
  },
  "admin.state_file": {
    type: "path",
    default: "none: API changes last until the process stops",
    example: '`"/var/lib/mini-balancer/state.json"`',
    meaning:
      "a JSON file keeping what the admin API changed (backends it added, weights, drain/disable states) across restarts: written atomically at each change, read at start; a corrupt file stops the start with a line naming it (see [Operations](operations.md#backends-through-the-admin-api))",
  },
};
