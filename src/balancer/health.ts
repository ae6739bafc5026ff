import type { Logger } from "@logtape/logtape";
import type { HealthConfig } from "../config/config.ts";
import type { Conn, Net } from "../runtime/types.ts";
import type { BackendState } from "./backend.ts";
import { reasonOf } from "../errors.ts";

/** The backend's name as a log field, when it has one besides its address. */
function named(backend: BackendState): { backend?: string } {
  const { name, address } = backend.config;
  return name === address ? {} : { backend: name };
}

/**
 * Keeps each backend's `up` flag true to its health, like HAProxy's checks:
 * `fall` failures in a row (probes, or real connects reported by sessions)
 * take a backend down, `rise` successful probes in a row bring it back.
 * Probes are TCP connects, optionally sending `send` and waiting for
 * `expect`. With active checks every backend is probed every `interval`;
 * without, only a backend that real connects took down is probed, until it
 * is up again. Probes of different backends are staggered over the interval.
 */
export class HealthChecker {
  readonly #config: HealthConfig;
  readonly #net: Net;
  readonly #log: Logger;
  readonly #backends: readonly BackendState[];
  readonly #failures = new Map<BackendState, number>();
  readonly #successes = new Map<BackendState, number>();
  readonly #timers = new Map<BackendState, ReturnType<typeof setTimeout>>();
  readonly #probes = new Set<Conn>();
  #stopped = false;

  /**
   * @param options.config the frontend's health settings
   * @param options.net the sockets to probe with
   * @param options.log the frontend's logger
   * @param options.backends the backends to watch
   */
  constructor(options: {
    config: HealthConfig;
    net: Net;
    log: Logger;
    backends: readonly BackendState[];
  }) {
    this.#config = options.config;
    this.#net = options.net;
    this.#log = options.log;
    this.#backends = options.backends;
  }

  /** Starts active probes, if configured, spread evenly over one interval. */
  start(): void {
    if (!this.#config.active) return;
    const count = this.#backends.length;
    this.#backends.forEach((backend, i) => {
      this.#schedule(backend, (this.#config.intervalMs * (i + 1)) / (count + 1));
    });
  }

  /** Stops every probe and timer. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const conn of this.#probes) conn.reset();
    this.#probes.clear();
  }

  /** A real connect to `backend` failed: counts towards `fall`. */
  connectFailed(backend: BackendState, reason: string): void {
    this.#failed(backend, reason);
  }

  /** A real connect to `backend` worked: its failure streak ends. */
  connectSucceeded(backend: BackendState): void {
    if (backend.up) this.#failures.delete(backend);
  }

  #schedule(backend: BackendState, delayMs: number): void {
    if (this.#stopped || this.#timers.has(backend)) return;
    // A little jitter so that probes of many balancers do not line up.
    const jitter = Math.random() * this.#config.intervalMs * 0.1;
    this.#timers.set(
      backend,
      setTimeout(() => {
        this.#timers.delete(backend);
        this.#probe(backend).then((failure) => {
          if (this.#stopped) return;
          if (failure === undefined) this.#succeeded(backend);
          else this.#failed(backend, failure);
          if (this.#config.active || !backend.up) {
            this.#schedule(backend, this.#config.intervalMs);
          }
        });
      }, delayMs + jitter),
    );
  }

  /** Probes a backend; resolves with the reason it failed, or undefined. */
  #probe(backend: BackendState): Promise<string | undefined> {
    const { timeoutMs, send, expect } = this.#config;
    return new Promise((resolve) => {
      let conn: Conn | undefined;
      let done = false;
      let received = "";
      const decoder = new TextDecoder();
      const finish = (failure: string | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (conn !== undefined) {
          this.#probes.delete(conn);
          conn.reset();
        }
        resolve(failure);
      };
      const timer = setTimeout(
        () => finish(`health check timed out after ${timeoutMs}ms`),
        timeoutMs,
      );
      this.#net.connect(backend.config.forwardTo).then((opened) => {
        conn = opened;
        if (done) return opened.reset();
        this.#probes.add(opened);
        opened.setHandlers({
          data(chunk) {
            received += decoder.decode(chunk, { stream: true });
            if (expect !== undefined && received.includes(expect)) finish(undefined);
          },
          end: () => finish(`closed before sending ${JSON.stringify(expect)}`),
          drain() {},
          close: () => finish(`closed before sending ${JSON.stringify(expect)}`),
        });
        if (send !== undefined) opened.write(new TextEncoder().encode(send));
        if (expect === undefined) finish(undefined);
      }, (error) => finish(reasonOf(error)));
    });
  }

  #succeeded(backend: BackendState): void {
    this.#failures.delete(backend);
    if (backend.up) return;
    const successes = (this.#successes.get(backend) ?? 0) + 1;
    this.#successes.set(backend, successes);
    if (successes < this.#config.rise) return;
    this.#successes.delete(backend);
    backend.up = true;
    this.#log.warn("backend is up", {
      target_address: backend.config.address,
      ...named(backend),
      reason: `${successes} health checks passed`,
    });
  }

  #failed(backend: BackendState, reason: string): void {
    this.#successes.delete(backend);
    if (!backend.up) return;
    const failures = (this.#failures.get(backend) ?? 0) + 1;
    this.#failures.set(backend, failures);
    if (failures < this.#config.fall) return;
    this.#failures.delete(backend);
    backend.up = false;
    this.#log.warn("backend is down", {
      target_address: backend.config.address,
      ...named(backend),
      reason,
    });
    // Without active checks, probe it until it is back.
    if (!this.#config.active) this.#schedule(backend, this.#config.intervalMs);
  }
}
