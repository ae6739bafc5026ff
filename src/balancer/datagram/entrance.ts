/**
 * A UDP frontend's entrance: its bound socket, whose datagrams go to the
 * frontend's {@linkcode FlowTable} and from which replies are sent. One
 * frontend per address (a datagram has no first bytes to choose by). A
 * reload hands the socket to the next entrance for the same address; a
 * closed entrance takes no new client, and closes the socket once the
 * flows it has end, so that replies in flight still reach their clients.
 *
 * @module
 */
import { formatAddress } from "../../address/address.ts";
import type { DatagramSocket, Endpoint, Net } from "../../runtime/types.ts";
import type { Events } from "../events.ts";
import { type Frontend, ListenError } from "../frontend.ts";

/** How a UDP frontend's address is written: `udp:HOST:PORT`. */
export function udpAddress(endpoint: Endpoint): string {
  return `udp:${formatAddress(endpoint)}`;
}

/** One bound UDP address and its frontend. */
export class DatagramEntrance {
  readonly #net: Net;
  readonly #members: Frontend[];
  readonly #reusePort: boolean;
  #socket: DatagramSocket | undefined;
  /**
   * Where the socket's datagrams go: this entrance, or the one that
   * adopted its socket in a reload (the socket's handler stays).
   */
  #door: { entrance: DatagramEntrance } = { entrance: this };

  /**
   * @param net the runtime's sockets
   * @param _events unused: refusals are the frontend's
   * @param members the frontend on this address (one)
   * @param reusePort bind with SO_REUSEPORT (one of several workers)
   */
  constructor(net: Net, _events: Events, members: Frontend[], reusePort = false) {
    this.#net = net;
    this.#members = members;
    this.#reusePort = reusePort;
  }

  /** The frontend behind this address, as a list like a TCP entrance's. */
  get members(): readonly Frontend[] {
    return this.#members;
  }

  /** No preamble is read: no timers. */
  get timers(): number {
    return 0;
  }

  /** The bound address, while bound. */
  get address(): Endpoint | undefined {
    return this.#socket?.address;
  }

  /**
   * Binds the address and starts taking datagrams.
   *
   * @param at where to bind instead of bind_on (the port an earlier socket got for port 0)
   * @returns the bound address
   * @throws {ListenError} when it cannot be bound
   */
  async listen(at?: Endpoint): Promise<Endpoint> {
    const frontend = this.#members[0]!;
    const { bindOn, name } = frontend.config;
    const where = at ?? bindOn;
    const door = this.#door;
    if (this.#net.bindDatagram === undefined) {
      throw new ListenError(udpAddress(bindOn), name, new Error("this runtime has no UDP sockets"));
    }
    try {
      this.#socket = await this.#net.bindDatagram({
        hostname: where.hostname,
        port: where.port,
        reusePort: this.#reusePort,
        handlers: {
          message: (data, from) => door.entrance.#members[0]!.flows!.receive(data, from),
          // An unconnected socket may hear of a client gone before its reply: nothing to do.
          error: () => {},
        },
      });
    } catch (error) {
      throw new ListenError(udpAddress(bindOn), name, error);
    }
    this.#bound();
    return this.#socket.address;
  }

  /** A UDP socket has no shape to change: any bound entrance can be taken over. */
  fits(_members: readonly Frontend[]): boolean {
    return this.#socket !== undefined;
  }

  /**
   * Takes over the socket of an entrance on the same address (a reload):
   * the socket stays open, the frontend behind it may change.
   *
   * @param old the entrance it replaces
   */
  adopt(old: DatagramEntrance): void {
    this.#socket = old.#socket;
    old.#socket = undefined;
    this.#door = old.#door;
    this.#door.entrance = this;
    this.#bound();
  }

  #bound(): void {
    const socket = this.#socket!;
    const frontend = this.#members[0]!;
    frontend.flows!.attach(socket);
    frontend.bound(socket.address, udpAddress(socket.address));
  }

  /** Takes no new client; the socket closes once the open flows have ended. */
  close(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket === undefined) return;
    const frontend = this.#members[0]!;
    frontend.flows!.close();
    void frontend.sessions.idle().then(() => socket.close());
  }
}
