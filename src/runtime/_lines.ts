/**
 * A child's standard output cut into lines, for {@linkcode ChildProcessHandle.onLine}:
 * shared by the `node:child_process` and Deno spawners.
 *
 * @module
 */
import type { ChildProcessHandle } from "./types.ts";

/** The longest line kept: a worker's report is a few dozen bytes. */
const MAX_LINE_CHARS = 64 * 1024;

/** Cuts text into lines and hands each to the listener of the moment. */
export interface LineReader {
  /** Takes the next piece of text. */
  read(chunk: string): void;
  /** Sets who hears each line from now on. */
  onLine: ChildProcessHandle["onLine"];
}

/** Makes a {@linkcode LineReader}; lines before a listener is set are dropped. */
export function lineReader(): LineReader {
  let listener: ((text: string) => void) | undefined;
  let partial = "";
  return {
    read(chunk) {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop()!;
      // A line without an end that keeps growing is not a report: drop it.
      if (partial.length > MAX_LINE_CHARS) partial = "";
      for (const line of lines) listener?.(line);
    },
    onLine(line) {
      listener = line;
    },
  };
}
