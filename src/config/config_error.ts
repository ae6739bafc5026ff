/**
 * The config's error type.
 *
 * @module
 */

/**
 * The one error a config load throws: it names the file, the field path and
 * the problem, in a message fit to print as it is.
 *
 * @example
 * ```ts
 * new ConfigError({ file: "lb.toml", path: "frontend.bind_on", problem: "is required" }).message;
 * // => 'Cannot load config "lb.toml": frontend.bind_on is required'
 * ```
 */
export class ConfigError extends Error {
  /** The config file's path, as given. */
  readonly file: string;
  /** The field path (`frontend.backend[0].forward_to`), empty for the whole file. */
  readonly path: string;
  /** What is wrong, without the file and path. */
  readonly problem: string;

  /**
   * Builds the error and its message.
   *
   * @param options.file the config file
   * @param options.path the field path, `""` when the whole file is at fault
   * @param options.problem what is wrong with it
   * @param options.cause the underlying error, if any
   */
  constructor(options: { file: string; path: string; problem: string; cause?: unknown }) {
    const { file, path, problem, cause } = options;
    super(`Cannot load config "${file}": ${path === "" ? "" : `${path} `}${problem}`, { cause });
    this.name = "ConfigError";
    this.file = file;
    this.path = path;
    this.problem = problem;
  }
}

/**
 * Says why a file could not be read, for a config error.
 *
 * @param error what reading it threw
 * @returns e.g. "file not found", "permission denied"
 */
export function readProblem(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === "ENOENT") return "file not found";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory, not a file";
  return `cannot be read: ${(error as Error).message}`;
}
