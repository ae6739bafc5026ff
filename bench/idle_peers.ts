/**
 * The two ends of the idle-connection test, as two processes of this script
 * (each with its own fd limit, since a container's hard limit may not allow
 * both ends in one process), driven by lines on standard input:
 *
 *     bun bench/idle_peers.ts hold     a backend that accepts connections
 *                                      and holds them; prints "hold PORT",
 *                                      then answers "count" with "held N"
 *     bun bench/idle_peers.ts client   answers "open PORT N" with
 *                                      "opened N MS" once N connections to
 *                                      127.0.0.1:PORT are open and idle, and
 *                                      "close" with "closed MS" once all closed
 *
 * Errors are answered with "error MESSAGE".
 *
 * @module
 */
import { createConnection, createServer, type Socket } from "node:net";
import process from "node:process";
import { serveCommands } from "./peer_commands.ts";

/** Connections being opened at once, kept below the listen backlogs. */
const IN_FLIGHT = 200;
const WAIT_MS = 60_000;

const sockets = new Set<Socket>();

function hold(): void {
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    // Answer a FIN with ours so that the proxy sees the connection close.
    socket.on("end", () => socket.end());
    socket.on("close", () => sockets.delete(socket));
  });
  server.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, () => {
    const address = server.address();
    console.log(`hold ${typeof address === "object" && address !== null ? address.port : 0}`);
  });
}

function connectOne(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      sockets.add(socket);
      socket.removeAllListeners("error");
      socket.on("error", () => {});
      socket.on("close", () => sockets.delete(socket));
      resolve();
    });
    socket.once("error", reject);
  });
}

async function open(port: number, count: number): Promise<string> {
  const started = Date.now();
  let next = 0;
  let failures = 0;
  let lastError = "";
  async function worker(): Promise<void> {
    while (next < count) {
      next++;
      try {
        await connectOne(port);
      } catch (error) {
        failures++;
        lastError = String(error);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, count) }, worker));
  if (failures > 0) throw new Error(`${failures} of ${count} connects failed, last: ${lastError}`);
  return `opened ${count} ${Date.now() - started}`;
}

async function close(): Promise<string> {
  const started = Date.now();
  for (const socket of sockets) socket.end();
  const deadline = Date.now() + WAIT_MS;
  while (sockets.size > 0) {
    if (Date.now() > deadline) throw new Error(`${sockets.size} connections still open`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return `closed ${Date.now() - started}`;
}

async function answer(command: string | undefined, args: string[]): Promise<string> {
  if (command === "count") return `held ${sockets.size}`;
  if (command === "open") return await open(Number(args[0]), Number(args[1]));
  if (command === "close") return await close();
  throw new Error(`unknown command ${command}`);
}

if (process.argv[2] === "hold") hold();
else if (process.argv[2] !== "client") {
  console.error("usage: bun bench/idle_peers.ts hold|client");
  process.exit(2);
}

serveCommands(answer);
