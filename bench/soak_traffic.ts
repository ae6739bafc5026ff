/**
 * The soak's traffic, from the harness's side: drives bench/soak_peers.ts,
 * two echo backends and a client on the load core that holds idle
 * connections and sends two paced streams through a proxy, short
 * connections and 1 MiB echoes.
 *
 * @module
 */
import { join } from "node:path";
import { Peer } from "./backends.ts";

/** How much traffic the client sends. */
export interface TrafficSettings {
  /** Idle connections opened first and held for the whole run. */
  idleConnections: number;
  /** New short connections a second, each echoing 64 bytes and closing. */
  shortPerSecond: number;
  /** Echoes of 1 MiB a second, each on a new connection. */
  echoesPerSecond: number;
}

/** What the client did since its start, as bench/soak_peers.ts counts it. */
export interface TrafficCounts {
  shortDone: number;
  shortFailed: number;
  /** Starts skipped because too many short connections were still under way. */
  shortSkipped: number;
  echoDone: number;
  echoFailed: number;
  /** Starts skipped because too many echoes were still under way. */
  echoSkipped: number;
  echoBytes: number;
  /** Idle connections open now. */
  idleOpen: number;
  /** Idle connections that closed before the run ended. */
  idleLost: number;
  lastError: string;
}

function parseCounts(text: string): TrafficCounts {
  const counts = JSON.parse(text) as TrafficCounts;
  if (typeof counts.shortDone !== "number") {
    throw new SyntaxError(`soak client: not counts: ${text.slice(0, 200)}`);
  }
  return counts;
}

/** The two processes of bench/soak_peers.ts. */
export class SoakTraffic {
  readonly #echo: Peer;
  readonly #client: Peer;
  /** The echo backends' ports on 127.0.0.1. */
  readonly echoPorts: number[];

  private constructor(echo: Peer, client: Peer, echoPorts: number[]) {
    this.#echo = echo;
    this.#client = client;
    this.echoPorts = echoPorts;
  }

  /**
   * Starts both processes under Bun, pinned to the load core, and waits for
   * the echo backends' ports.
   *
   * @throws Error when the echo process does not say its ports
   */
  static async start(bun: string, repo: string): Promise<SoakTraffic> {
    const script = join(repo, "bench/soak_peers.ts");
    const echo = new Peer("soak echo backends", bun, [script, "echo"]);
    const client = new Peer("soak client", bun, [script, "client"]);
    const first = await echo.nextLine(30_000);
    const ports = first.match(/^echo (\d+) (\d+)$/)?.slice(1).map(Number);
    if (!ports) throw new Error(`soak echo backends said ${first}`);
    return new SoakTraffic(echo, client, ports);
  }

  /** Whether both processes still run. */
  get alive(): boolean {
    return this.#echo.proc.alive && this.#client.proc.alive;
  }

  /**
   * Opens the idle connections through the proxy at 127.0.0.1:`port`, waits
   * until the echo backends hold them all, and starts both streams.
   *
   * @returns milliseconds until every idle connection reached a backend
   * @throws Error when a connect fails or the backends never see them all
   */
  async begin(port: number, settings: TrafficSettings): Promise<number> {
    const started = Date.now();
    const { idleConnections, shortPerSecond, echoesPerSecond } = settings;
    await this.#client.ask(
      `start ${port} ${idleConnections} ${shortPerSecond} ${echoesPerSecond}`,
      "started",
    );
    const deadline = Date.now() + 60_000;
    // The streams run already, so the backends hold at least the idle ones.
    for (;;) {
      const held = await this.#echo.command("count", "held");
      if (held >= idleConnections) return Date.now() - started;
      if (Date.now() > deadline) {
        throw new Error(
          `${idleConnections} idle connections opened, the backends hold ${held} after 60 s`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** What the client did since {@linkcode begin}. */
  async counts(): Promise<TrafficCounts> {
    return parseCounts(await this.#client.ask("stats", "stats"));
  }

  /**
   * Stops both streams, waits for what is under way, closes the idle
   * connections and resets the counts for the next contender.
   *
   * @returns the counts at the end
   * @throws Error when connections stay open
   */
  async end(): Promise<TrafficCounts> {
    return parseCounts(await this.#client.ask("stop", "stopped", 120_000));
  }
}
