/**
 * Agent checks, like HAProxy's `agent-check`: every agent interval the
 * balancer connects to a port of each backend's host, reads one line and
 * applies its words (`up`, `down`, `drain`, `maint`, `ready`, `NN%`) to the
 * backend. An agent that does not answer changes nothing.
 *
 * @module
 */
import type { HealthConfig } from "../../config/config.ts";
import type { Conn, Net } from "../../runtime/types.ts";
import type { AgentWords, BackendState } from "./backend.ts";
import type { Events, FrontendInfo } from "../events.ts";
import type { Pool } from "./pool.ts";

/** The longest agent line read: more is cut off there (a stranger may send a lot). */
export const MAX_AGENT_LINE = 256;

/** One agent line parsed: its words, and the same words written the one way status pages show them. */
export interface AgentAnswer {
  /** The words that change the backend. */
  readonly words: AgentWords;
  /** The known words in the order they came (`50% drain`). */
  readonly shown: string;
}

/**
 * Parses one agent line in HAProxy's format: words separated by spaces,
 * tabs or commas, case-insensitive, anything after `#` a comment. `up`,
 * `down` (also `fail`, `stopped`), `ready`, `drain`, `maint` and `NN%`
 * (0 to 100, the share of the configured weight; `0%` is a drain) are
 * known; other words are ignored.
 *
 * @param line the line, without its end of line
 * @returns the answer, or undefined when it had no known word
 */
export function parseAgentLine(line: string): AgentAnswer | undefined {
  const hash = line.indexOf("#");
  const text = (hash < 0 ? line : line.slice(0, hash)).toLowerCase();
  let operational: AgentWords["operational"];
  let administrative: AgentWords["administrative"];
  let share: number | undefined;
  const shown: string[] = [];
  for (const word of text.split(/[\s,]+/)) {
    if (word === "") continue;
    if (word === "up") operational = "up";
    else if (word === "down" || word === "fail" || word === "stopped") operational = "down";
    else if (word === "ready" || word === "drain" || word === "maint") administrative = word;
    else if (/^\d{1,3}(\.\d+)?%$/.test(word)) {
      const percent = Number(word.slice(0, -1));
      if (percent > 100) continue;
      share = percent / 100;
    } else continue;
    shown.push(word === "fail" || word === "stopped" ? "down" : word);
  }
  if (shown.length === 0) return undefined;
  return {
    words: {
      ...(operational === undefined ? {} : { operational }),
      ...(administrative === undefined ? {} : { administrative }),
      ...(share === undefined ? {} : { share }),
    },
    shown: shown.join(" "),
  };
}

/** Options for {@linkcode AgentChecker}. */
export interface AgentOptions {
  /** The frontend's health settings: `agentPort`, `agentIntervalMs`, `timeoutMs`. */
  config: HealthConfig;
  /** The sockets to poll with. */
  net: Net;
  /** The backends whose agents are polled. */
  pool: Pool;
  /** Where changes are reported. */
  events: Events;
  /** The frontend, for the events. */
  frontend: FrontendInfo;
}

/**
 * Polls each backend's agent every agent interval (staggered over the
 * first one), each poll bounded by the health timeout and
 * {@linkcode MAX_AGENT_LINE}, and applies what it says; each change of
 * what an agent says is reported once.
 */
export class AgentChecker {
  readonly #config: HealthConfig;
  readonly #net: Net;
  readonly #pool: Pool;
  readonly #events: Events;
  readonly #frontend: FrontendInfo;
  readonly #timers = new Map<BackendState, ReturnType<typeof setTimeout>>();
  readonly #polls = new Set<() => void>();
  #stopped = false;

  /** @param options what to poll and where to report */
  constructor(options: AgentOptions) {
    this.#config = options.config;
    this.#net = options.net;
    this.#pool = options.pool;
    this.#events = options.events;
    this.#frontend = options.frontend;
  }

  /** The agent interval in milliseconds. */
  get #intervalMs(): number {
    return this.#config.agentIntervalMs ?? this.#config.intervalMs;
  }

  /** Starts polling every backend's agent (nothing without `agentPort`). */
  start(): void {
    if (this.#config.agentPort === undefined) return;
    const backends = this.#pool.backends;
    backends.forEach((backend, i) => {
      this.#schedule(backend, (this.#intervalMs * (i + 1)) / (backends.length + 1));
    });
  }

  /**
   * Backends that appeared (discovery): polled at once, then every interval.
   *
   * @param backends the new backends
   */
  added(backends: readonly BackendState[]): void {
    if (this.#config.agentPort === undefined) return;
    for (const backend of backends) this.#schedule(backend, 0);
  }

  /** Stops every poll and timer. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    for (const abort of this.#polls) abort();
    this.#polls.clear();
  }

  #schedule(backend: BackendState, delayMs: number): void {
    if (this.#stopped || this.#timers.has(backend)) return;
    if (backend.config.forwardTo.path !== undefined) return; // a Unix socket has no host to ask
    this.#timers.set(
      backend,
      setTimeout(() => {
        this.#timers.delete(backend);
        if (backend.removed) return;
        this.#poll(backend).then((line) => {
          if (this.#stopped || backend.removed) return;
          const answer = line === undefined ? undefined : parseAgentLine(line);
          if (answer !== undefined && answer.shown !== backend.agent) {
            backend.setAgent(answer.words, answer.shown);
            this.#events.agentChanged(this.#frontend, backend, answer.shown);
          }
          this.#schedule(backend, this.#intervalMs);
        });
      }, delayMs),
    );
  }

  /** Reads one line from the backend's agent; undefined when it did not answer in time. */
  #poll(backend: BackendState): Promise<string | undefined> {
    const { timeoutMs, agentPort } = this.#config;
    return new Promise((resolve) => {
      let conn: Conn | undefined;
      let done = false;
      let received = "";
      const decoder = new TextDecoder();
      const finish = (line: string | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.#polls.delete(abort);
        conn?.reset();
        resolve(line);
      };
      const abort = () => finish(undefined);
      this.#polls.add(abort);
      const timer = setTimeout(abort, timeoutMs);
      // What came before the connection ended counts as the line.
      const ended = () => finish(received.trim() === "" ? undefined : received);
      this.#net.connect({ hostname: backend.config.forwardTo.hostname, port: agentPort! }).then(
        (opened) => {
          conn = opened;
          if (done) return opened.reset();
          opened.setHandlers({
            data(chunk) {
              received += decoder.decode(chunk, { stream: true });
              const end = received.search(/[\r\n]/);
              if (end >= 0) finish(received.slice(0, end));
              else if (received.length >= MAX_AGENT_LINE) finish(received.slice(0, MAX_AGENT_LINE));
            },
            end: ended,
            drain() {},
            close: ended,
          });
        },
        () => finish(undefined),
      );
    });
  }
}
