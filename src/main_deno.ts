/**
 * Entry for Deno (`deno task start`).
 *
 * @module
 */
import { main } from "./cli.ts";
import { denoNet } from "./runtime/deno.ts";

const code = await main(Deno.args, {
  net: denoNet,
  onShutdownSignal(stop) {
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    return () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
    };
  },
});
Deno.exit(code);
