/**
 * Watching the config file for `--watch`: a change, however the editor
 * saves it (in place, or a new file renamed over the old), becomes one call
 * once the writes have settled.
 *
 * @module
 */
import { watch } from "node:fs";
import { basename, dirname } from "node:path";

/**
 * Calls `changed` once the file has stopped changing for `quietMs`.
 *
 * The folder is watched rather than the file: an editor that writes a new
 * file and renames it over the old one would leave a watch on the file
 * looking at the replaced inode.
 *
 * @param file the config file
 * @param changed what to run after a change
 * @param failed told when watching fails (the folder was removed, …); the
 * watcher stops, the balancer goes on
 * @param quietMs how long the file must stay unchanged first @default 200
 * @returns a function that stops watching
 */
export function watchFile(
  file: string,
  changed: () => void,
  failed: (error: Error) => void,
  quietMs = 200,
): () => void {
  const name = basename(file);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const watcher = watch(dirname(file), (_event, changedName) => {
    if (changedName !== null && String(changedName) !== name) return;
    clearTimeout(timer);
    timer = setTimeout(changed, quietMs);
  });
  // An unhandled "error" event would take the process down with it.
  watcher.on("error", (error: Error) => {
    clearTimeout(timer);
    watcher.close();
    failed(error);
  });
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
