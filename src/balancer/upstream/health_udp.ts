/**
 * One UDP health probe (`health.udp`): a connected datagram socket to the
 * backend, one datagram of `send`, and the reply judged against `expect`.
 *
 * What UDP can tell, and what it cannot:
 * - an ICMP port unreachable fails the probe at once, on Bun and Node, which
 *   report it on a connected socket as `ECONNREFUSED`; Deno reports no ICMP
 *   error at all, so there a closed port is only seen through `expect`
 *   (no reply within the timeout);
 * - with `expect`, a reply holding it passes, any other reply fails, and
 *   silence for the whole timeout fails;
 * - without `expect`, any reply passes at once and silence for the whole
 *   timeout passes too: a UDP service owes no answer to a datagram it does
 *   not understand, so silence is not a fault (on Deno, neither is a closed
 *   port: give such backends an `expect`).
 *
 * `send` and `expect` are latin1: each character U+0000-U+00FF is one byte
 * (TOML `\u00XX` escapes write binary payloads, a DNS query for one). Each
 * probe binds a socket of its own and closes it however the probe ends;
 * one socket per probe every interval is cheap.
 *
 * @module
 */
import { isLocalShortage, reasonOf } from "../../errors.ts";
import type { DatagramSocket, Endpoint, Net } from "../../runtime/types.ts";

/** What a UDP probe sends and expects. */
export interface UdpProbeOptions {
  /** The sockets to probe with; without `bindDatagram` the probe fails, saying why. */
  readonly net: Net;
  /** The backend's host (an IP literal) and UDP port. */
  readonly endpoint: Endpoint;
  /** The datagram, latin1; none: an empty datagram. */
  readonly send: string | undefined;
  /** What a reply must hold, latin1; none: any reply, or silence, passes. */
  readonly expect: string | undefined;
  /** How long the probe waits for a reply, in milliseconds. */
  readonly timeoutMs: number;
}

/** A UDP probe under way. */
export interface UdpProbe {
  /**
   * Resolves with the reason the probe failed, undefined when it passed, or
   * null when it could not be told (aborted, or this host is short of
   * sockets or buffer: no fault of the backend's).
   */
  readonly result: Promise<string | undefined | null>;
  /** Ends the probe at once: its socket closed, its timer cleared, `result` null. */
  abort(): void;
}

/** How much of a wrong reply a failure reason quotes (as TCP probes do). */
const QUOTED_BYTES = 40;

/**
 * A string's characters as bytes, one each.
 *
 * @param text characters U+0000-U+00FF
 * @returns the bytes
 * @throws {RangeError} naming the first character that is not one byte
 */
export function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) {
      const hex = code.toString(16).toUpperCase().padStart(4, "0");
      throw new RangeError(`character U+${hex} at index ${i} is not one byte (U+0000-U+00FF)`);
    }
    bytes[i] = code;
  }
  return bytes;
}

/** Bytes as latin1 text: every byte one character. */
function latin1Text(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/**
 * Latin1 text as a JSON string literal with every byte past printable ASCII
 * escaped too (`\u0081`, not the raw character), so that a binary reply
 * reads the same in any log viewer.
 */
function literal(text: string): string {
  return JSON.stringify(text).replace(
    /[\u007f-\u00ff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The start of a reply, escaped, cut short ("…" marking a cut). */
function quote(received: string): string {
  const cut = received.length > QUOTED_BYTES;
  return literal(cut ? received.slice(0, QUOTED_BYTES) : received) + (cut ? "…" : "");
}

/**
 * Probes a backend over UDP: binds a connected socket ("0.0.0.0" or "::" by
 * the backend's family, any port), sends `send` as one datagram and judges
 * the first reply, within `timeoutMs`.
 *
 * @param options where to probe and what to send and expect
 * @returns the probe, to await or abort
 */
export function probeUdp(options: UdpProbeOptions): UdpProbe {
  const { net, endpoint, send, expect, timeoutMs } = options;
  let socket: DatagramSocket | undefined;
  let done = false;
  let resolve!: (failure: string | undefined | null) => void;
  const result = new Promise<string | undefined | null>((r) => (resolve = r));
  const finish = (failure: string | undefined | null) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket?.close();
    resolve(failure);
  };
  // Silence: a fault only when a reply was expected.
  const timer = setTimeout(
    () => finish(expect === undefined ? undefined : `no reply within ${timeoutMs}ms`),
    timeoutMs,
  );
  const probe: UdpProbe = { result, abort: () => finish(null) };
  if (net.bindDatagram === undefined) {
    finish(`UDP health probes are not available on ${net.runtime}`);
    return probe;
  }
  if (endpoint.path !== undefined) {
    finish("UDP health probes need a host and port, not a Unix socket");
    return probe;
  }
  let payload: Uint8Array;
  try {
    payload = latin1Bytes(send ?? "");
  } catch (error) {
    finish(`health.send: ${(error as Error).message}`);
    return probe;
  }
  net.bindDatagram({
    hostname: endpoint.hostname.includes(":") ? "::" : "0.0.0.0",
    port: 0,
    connect: { hostname: endpoint.hostname, port: endpoint.port },
    handlers: {
      message(data) {
        if (expect === undefined || latin1Text(data).includes(expect)) return finish(undefined);
        finish(`reply did not hold ${literal(expect)}: received ${quote(latin1Text(data))}`);
      },
      error(error) {
        const code = (error as { code?: unknown }).code;
        finish(code === "ECONNREFUSED" ? "port unreachable (ICMP)" : reasonOf(error));
      },
    },
  }).then((bound) => {
    socket = bound;
    if (done) return bound.close();
    // Dropped by this host (a full send buffer): no fault of the backend's.
    if (!bound.send(payload)) finish(null);
  }, (error) => finish(isLocalShortage(error) ? null : reasonOf(error)));
  return probe;
}
