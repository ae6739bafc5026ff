/**
 * The flows of one UDP frontend, by client address and port: a datagram
 * from a client with a flow goes to that flow's backend; one from a new
 * client is admitted as a new connection would be (allow/deny, its rate,
 * its limit of open flows, the frontend's max_connections), gets a backend
 * from the frontend's algorithm and becomes a {@linkcode Flow}. Replies go
 * back from the frontend's socket, which the entrance attaches.
 *
 * A refused or unplaceable datagram costs a counter and, through the log
 * summary, no line of its own: a flood from one address cannot fill the log.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { FrontendConfig } from "../../config/config.ts";
import type { DatagramSocket, Endpoint, Net } from "../../runtime/types.ts";
import type { Events, FrontendInfo } from "../events.ts";
import type { Pool } from "../upstream/pool.ts";
import { Flow, type FlowScope } from "./flow.ts";
import { type Hooks, preambleOf, runAdmit, runSelect } from "../hooks.ts";

/** What a flow table needs from its frontend. */
export interface FlowTableScope extends FrontendInfo {
  /** The frontend's live config: new flows follow it, open ones keep theirs. */
  readonly config: FrontendConfig;
  /** The runtime's sockets. */
  readonly net: Net;
  /** Where flows and drops are reported. */
  readonly events: Events;
  /** The frontend's backends. */
  readonly pool: Pool;
  /** The frontend's live flows, swept for their limits. */
  readonly sessions: {
    readonly size: number;
    add(flow: Flow): void;
    delete(flow: Flow): boolean;
  };
  /**
   * Admits a new flow's client (lists, rate, its open flows), telling a refusal.
   *
   * @returns its admission key, or false when refused
   */
  admitPeer(peer: Endpoint): string | undefined | false;
  /** Gives back the place {@linkcode FlowTableScope.admitPeer} counted, when no flow was made. */
  releasePeer(clientKey: string | undefined): void;
  /**
   * The program's hooks. A flow's `admit` must answer synchronously: a
   * promise refuses the flow (its datagrams are not queued while one
   * settles). `select` names its backend as for a connection.
   */
  readonly hooks?: Hooks;
}

/** The live flows of a UDP frontend. */
export class FlowTable implements FlowScope {
  readonly #scope: FlowTableScope;
  readonly #flows = new Map<string, Flow>();
  #socket: DatagramSocket | undefined;
  /** Whether new clients are turned away (the frontend is stopping or retired). */
  #closing = false;

  /** @param scope the frontend */
  constructor(scope: FlowTableScope) {
    this.#scope = scope;
  }

  get frontend(): FrontendInfo {
    return this.#scope;
  }

  get net(): Net {
    return this.#scope.net;
  }

  get events(): Events {
    return this.#scope.events;
  }

  get pool(): Pool {
    return this.#scope.pool;
  }

  /**
   * The frontend's socket, that replies are sent from (bound, or handed
   * over by a reload).
   *
   * @param socket the bound socket
   */
  attach(socket: DatagramSocket): void {
    this.#socket = socket;
    this.#closing = false;
  }

  /**
   * Takes no new client; flows waiting for `responses` go on until they
   * are in, the others end now (see {@linkcode Flow.settle}).
   */
  close(): void {
    this.#closing = true;
    for (const flow of [...this.#flows.values()]) flow.settle();
  }

  /**
   * A datagram at the frontend's socket.
   *
   * @param data the datagram, whole
   * @param from the client's address and port
   */
  receive(data: Uint8Array, from: Endpoint): void {
    const key = `${from.hostname}:${from.port}`;
    const flow = this.#flows.get(key);
    if (flow !== undefined) return flow.fromClient(data);
    this.#open(key, from)?.fromClient(data);
  }

  /** A new client's flow, or undefined when it is refused (told) or cannot be placed. */
  #open(key: string, from: Endpoint): Flow | undefined {
    const scope = this.#scope;
    const events = scope.events;
    if (this.#closing) {
      events.datagramDropped(scope, formatAddress(from), "closing", undefined);
      return undefined;
    }
    const clientKey = scope.admitPeer(from);
    if (clientKey === false) return undefined;
    const config = scope.config;
    const { admit, select } = scope.hooks ?? {};
    if (admit !== undefined) {
      const context = {
        frontend: scope.name,
        client: from,
        preamble: preambleOf(undefined, false),
        transport: "udp" as const,
      };
      const refused = runAdmit(admit, context, config.headerTimeoutMs, true) as string | undefined;
      if (refused !== undefined) {
        events.refused(scope, formatAddress(from), "hook", refused);
        scope.releasePeer(clientKey);
        return undefined;
      }
    }
    const max = config.maxConnections;
    const pool = scope.pool;
    let full: string | undefined;
    if (max !== undefined && scope.sessions.size >= max) {
      full = `${max} flow${max === 1 ? "" : "s"} open (max_connections)`;
      events.refused(scope, formatAddress(from), "frontend_full", full);
    } else if (pool.allFull()) {
      full = "every backend is at its max_connections";
      events.refused(scope, formatAddress(from), "backends_full", full);
    }
    let target: ReturnType<Pool["pick"]>;
    if (full === undefined) {
      if (select !== undefined) {
        const context = {
          client: from,
          preamble: preambleOf(undefined, false),
          transport: "udp" as const,
        };
        target = runSelect(select, scope.name, pool, context);
      }
      target ??= pool.pick({ client: from });
    }
    if (target === undefined) {
      if (full === undefined) {
        events.datagramDropped(scope, formatAddress(from), "no_backend", undefined);
      }
      scope.releasePeer(clientKey);
      return undefined;
    }
    const flow = new Flow(this, config, key, from, clientKey, target);
    this.#flows.set(key, flow);
    scope.sessions.add(flow);
    events.flowOpened(flow);
    flow.open();
    return flow;
  }

  reply(data: Uint8Array, to: Endpoint): boolean {
    return this.#socket?.send(data, to) ?? false;
  }

  ended(flow: Flow): void {
    if (this.#flows.get(flow.key) === flow) this.#flows.delete(flow.key);
    this.#scope.sessions.delete(flow);
  }
}
