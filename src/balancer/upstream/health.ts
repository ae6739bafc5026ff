/**
 * Health checks, like HAProxy's: keeps each backend's `up` flag true to its
 * health and reports every probe and every change through the events.
 *
 * @module
 */
import type { HealthConfig } from "../../config/config.ts";
import { isLocalShortage, reasonOf } from "../../errors.ts";
import type { Conn, Net } from "../../runtime/types.ts";
import type { BackendState } from "./backend.ts";
import type { Events, FrontendInfo } from "../events.ts";
import type { Pool } from "./pool.ts";

/** How much of a wrong answer a failure reason quotes. */
const QUOTED_BYTES = 40;

/**
 * Quotes the start of what a probe received, escaped, cut short.
 *
 * @param received the text received
 * @returns a JSON string literal of at most {@linkcode QUOTED_BYTES} characters, "…" marking a cut
 */
export function quoteReceived(received: string): string {
  const cut = received.length > QUOTED_BYTES;
  return JSON.stringify(cut ? received.slice(0, QUOTED_BYTES) : received) + (cut ? "…" : "");
}

/** Options for {@linkcode HealthChecker}. */
export interface HealthOptions {
  /** The frontend's health settings. */
  config: HealthConfig;
  /** The sockets to probe with. */
  net: Net;
  /** The backends to watch; their state lives there. */
  pool: Pool;
  /** Where probes and changes are reported. */
  events: Events;
  /** The frontend, for the events. */
  frontend: FrontendInfo;
}

/**
 * Keeps each backend's `up` flag true to its health: `fall` failures in a
 * row (probes, or real connects reported through the pool) take a backend
 * down, `rise` successful probes in a row bring it back. Probes are TCP
 * connects, optionally sending `send` and waiting for `expect`. With active
 * checks every backend is probed every `interval`; without, only a backend
 * that real connects took down is probed, until it is up again. Probes of
 * different backends are staggered over the interval.
 */
export class HealthChecker {
  readonly #config: HealthConfig;
  readonly #net: Net;
  readonly #pool: Pool;
  readonly #events: Events;
  readonly #frontend: FrontendInfo;
  readonly #timers = new Map<BackendState, ReturnType<typeof setTimeout>>();
  /** Ends each probe under way, connecting or connected (for stop). */
  readonly #probes = new Set<() => void>();
  #stopped = false;

  /** @param options what to check and where to report */
  constructor(options: HealthOptions) {
    this.#config = options.config;
    this.#net = options.net;
    this.#pool = options.pool;
    this.#events = options.events;
    this.#frontend = options.frontend;
    this.#pool.onConnectFailed = (backend, reason) => this.#failed(backend, reason);
  }

  /** Starts active probes, if configured, spread evenly over one interval. */
  start(): void {
    if (!this.#config.active) return;
    const backends = this.#pool.backends;
    backends.forEach((backend, i) => {
      this.#schedule(backend, (this.#config.intervalMs * (i + 1)) / (backends.length + 1));
    });
  }

  /**
   * Backends that appeared (service discovery): probed at once, then at
   * every interval, and up once `rise` probes in a row have passed.
   *
   * @param backends the new backends, down until they pass
   */
  added(backends: readonly BackendState[]): void {
    if (!this.#config.active) return;
    for (const backend of backends) this.#schedule(backend, 0);
  }

  /** Stops every probe and timer. */
  stop(): void {
    this.#stopped = true;
    this.#pool.onConnectFailed = undefined;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const abort of this.#probes) abort();
    this.#probes.clear();
  }

  #schedule(backend: BackendState, delayMs: number): void {
    if (this.#stopped || this.#timers.has(backend)) return;
    // A little jitter so that probes of many balancers do not line up.
    const jitter = Math.random() * this.#config.intervalMs * 0.1;
    this.#timers.set(
      backend,
      setTimeout(() => {
        this.#timers.delete(backend);
        if (backend.removed) return;
        if (backend.admin === "disabled") {
          // Disabled by an operator: no probes until enabled again.
          return this.#schedule(backend, this.#config.intervalMs);
        }
        const started = performance.now();
        this.#probe(backend).then((failure) => {
          if (this.#stopped) return;
          if (failure !== null) {
            this.#events.probed(this.#frontend, backend, failure, performance.now() - started);
            if (failure === undefined) this.#succeeded(backend);
            else this.#failed(backend, failure);
          }
          if (this.#config.active || !backend.healthy) {
            this.#schedule(backend, this.#config.intervalMs);
          }
        });
      }, delayMs + jitter),
    );
  }

  /**
   * Probes a backend; resolves with the reason it failed, undefined when it
   * passed, or null when it could not be told (this host is out of file
   * descriptors: no fault of the backend's).
   */
  #probe(backend: BackendState): Promise<string | undefined | null> {
    const { timeoutMs, send, expect } = this.#config;
    return new Promise((resolve) => {
      let conn: Conn | undefined;
      let done = false;
      let received = "";
      const decoder = new TextDecoder();
      const finish = (failure: string | undefined | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#probes.delete(abort);
        conn?.reset();
        resolve(failure);
      };
      // Stopped: not the backend's fault, nothing to tell.
      const abort = () => finish(null);
      this.#probes.add(abort);
      // What went wrong when the expected answer never came.
      const noAnswer = (how: string) =>
        received === ""
          ? `${how} before sending ${JSON.stringify(expect)}`
          : `answer did not match ${JSON.stringify(expect)}: received ${
            quoteReceived(received)
          } (${how})`;
      const timer = setTimeout(
        () =>
          finish(
            conn === undefined
              ? `health check timed out after ${timeoutMs}ms`
              : noAnswer(`timed out after ${timeoutMs}ms`),
          ),
        timeoutMs,
      );
      this.#net.connect(backend.config.forwardTo).then((opened) => {
        conn = opened;
        if (done) return opened.reset();
        opened.setHandlers({
          data(chunk) {
            received += decoder.decode(chunk, { stream: true });
            if (expect !== undefined && received.includes(expect)) finish(undefined);
          },
          end: () => finish(noAnswer("closed")),
          drain() {},
          close: () => finish(noAnswer("closed")),
        });
        if (send !== undefined) opened.write(new TextEncoder().encode(send));
        if (expect === undefined) finish(undefined);
      }, (error) => finish(isLocalShortage(error) ? null : reasonOf(error)));
    });
  }

  #succeeded(backend: BackendState): void {
    backend.failures = 0;
    if (backend.healthy) return;
    backend.successes++;
    if (backend.successes < this.#config.rise) return;
    const passed = backend.successes;
    backend.successes = 0;
    backend.healthy = true;
    this.#events.backendUp(this.#frontend, backend, `${passed} health checks passed`);
  }

  #failed(backend: BackendState, reason: string): void {
    backend.successes = 0;
    if (!backend.healthy) return;
    backend.failures++;
    if (backend.failures < this.#config.fall) return;
    backend.failures = 0;
    backend.healthy = false;
    this.#events.backendDown(this.#frontend, backend, reason);
    // Without active checks, probe it until it is back.
    if (!this.#config.active) this.#schedule(backend, this.#config.intervalMs);
  }
}
