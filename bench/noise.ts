/**
 * CPU time the machine spent on processes this benchmark did not start:
 * on a shared machine, another job's load skews every figure, so each
 * measurement says how much there was.
 *
 * @module
 */
import process from "node:process";
import { cpuSecondsWithReaped, machineCpuSeconds } from "./proc_stats.ts";

/** Measures other processes' CPU time from its creation on. */
export class NoiseMeter {
  readonly #started = Date.now();
  readonly #machine = machineCpuSeconds();
  readonly #ours = cpuSecondsWithReaped(process.pid);

  /** CPU seconds used by processes outside the benchmark's tree so far. */
  otherCpuSeconds(): number {
    const machine = machineCpuSeconds() - this.#machine;
    const ours = cpuSecondsWithReaped(process.pid) - this.#ours;
    return Math.max(0, machine - ours);
  }

  /** Wall-clock seconds since creation. */
  elapsedSeconds(): number {
    return (Date.now() - this.#started) / 1000;
  }
}
