/**
 * The command loop of the bench's helper processes (`idle_peers.ts`,
 * `soak_peers.ts`): one command per line on standard input, answered with
 * one line on standard output, in the order the commands came; the process
 * exits when its input closes (the harness went away).
 *
 * @module
 */
import process from "node:process";
import { createInterface } from "node:readline";

/**
 * Answers each line of standard input with `answer(command, args)`, one
 * after another; an error is answered `error MESSAGE`.
 *
 * @param answer what a command answers
 */
export function serveCommands(
  answer: (command: string | undefined, args: string[]) => Promise<string>,
): void {
  let queue = Promise.resolve();
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [command, ...args] = line.trim().split(/\s+/);
    queue = queue.then(async () => {
      try {
        console.log(await answer(command, args));
      } catch (error) {
        console.log(`error ${error instanceof Error ? error.message : String(error)}`);
      }
    });
  }).on("close", () => process.exit(0));
}
