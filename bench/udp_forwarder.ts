/**
 * The leanest UDP forwarder Bun allows, the UDP bench's `bun-minimal`
 * reference (issue 21): one unconnected listening socket, a Map from the
 * client's "address:port" to a connected socket per flow (its backend picked
 * round robin), replies sent back through the listening socket. With
 * RESPONSES > 0 a flow ends after that many replies (`responses = 1`); flows
 * idle for IDLE_SECONDS end at the next sweep. No config, no logs, no health.
 *
 * Usage: bun bench/udp_forwarder.ts PORT RESPONSES IDLE_SECONDS BACKEND_PORT...
 *
 * @module
 */
// deno-lint-ignore-file no-explicit-any
import process from "node:process";

declare const Bun: any;

interface Flow {
  socket: any;
  /** Datagrams that came before the flow's socket was ready. */
  early: Uint8Array[] | undefined;
  replies: number;
  seen: number;
}

const [port, responses, idleSeconds, ...backends] = process.argv.slice(2).map(Number);
const flows = new Map<string, Flow>();
let next = 0;
let now = Date.now();

const listener = await Bun.udpSocket({
  hostname: "127.0.0.1",
  port,
  socket: {
    data(_socket: any, data: Uint8Array, clientPort: number, address: string) {
      const key = `${address}:${clientPort}`;
      const flow = flows.get(key);
      if (flow === undefined) return void open(key, data, clientPort, address);
      flow.seen = now;
      if (flow.early) flow.early.push(data);
      else flow.socket.send(data);
    },
    error() {},
  },
});

async function open(key: string, first: Uint8Array, clientPort: number, address: string) {
  const flow: Flow = { socket: undefined, early: [first], replies: 0, seen: now };
  flows.set(key, flow);
  const backend = backends[next++ % backends.length];
  flow.socket = await Bun.udpSocket({
    connect: { hostname: "127.0.0.1", port: backend },
    socket: {
      data(socket: any, data: Uint8Array) {
        listener.send(data, clientPort, address);
        flow.seen = now;
        if (responses! > 0 && ++flow.replies >= responses!) {
          socket.close();
          flows.delete(key);
        }
      },
      // ICMP port unreachable from a backend that is gone: the flow ends.
      error() {
        flow.socket.close();
        flows.delete(key);
      },
    },
  });
  for (const data of flow.early!) flow.socket.send(data);
  flow.early = undefined;
}

setInterval(() => {
  now = Date.now();
  for (const [key, flow] of flows) {
    if (flow.socket && now - flow.seen > idleSeconds! * 1000) {
      flow.socket.close();
      flows.delete(key);
    }
  }
}, 1000);
