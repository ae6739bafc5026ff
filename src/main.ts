/**
 * Entry for Bun (`bun run src/main.ts`, and the compiled executable).
 *
 * @module
 */
import process from "node:process";
import { main } from "./cli.ts";
import { bunNet } from "./runtime/bun.ts";

const code = await main(process.argv.slice(2), {
  net: bunNet,
  onShutdownSignal(stop) {
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    return () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    };
  },
});
process.exit(code);
