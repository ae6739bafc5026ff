/**
 * Backends changed at run time through the admin API: the ones it added,
 * the weights and limits it patched, kept as a per-frontend overlay that
 * the balancer merges into every frontend config it is given (at start and
 * at each reload), so health checks, algorithms and discovery all see one
 * list. A file backend of the same name as an API one replaces it. A
 * backend the API removes stops taking connections at once and leaves the
 * list once its open connections have ended.
 *
 * @module
 */
import type { BackendConfig, FrontendConfig } from "../../config/config.ts";
import { validateBackendTable } from "../../config/backend_table.ts";
import { getLog, OPERATOR_CATEGORY } from "../../log.ts";
import type { AdminState, BackendState } from "./backend.ts";
import type { Pool } from "./pool.ts";

/** A frontend as the overlay reaches it: its live config and pool, and how to update it. */
export interface OverlayFrontend {
  readonly name: string;
  readonly pool: Pool;
  update(config: FrontendConfig): unknown;
}

/**
 * What PATCH may change on a backend.
 *
 * @example
 * ```ts
 * import type { BackendPatch } from "mini-balancer";
 *
 * const patch: BackendPatch = { weight: 3, maxConnections: null }; // null lifts the limit
 * const outcome = balancer.backends.patch("web", "a", patch);
 * if (!outcome.ok) console.error(outcome.status, outcome.error);
 * ```
 */
export interface BackendPatch {
  /** The new weight (1 to 256). */
  weight?: number;
  /** The new limit of open connections; null: none. */
  maxConnections?: number | null;
}

/** A backend the API added: its table as received (for the state file) and its config. */
interface Added {
  readonly table: Record<string, unknown>;
  readonly config: BackendConfig;
  /** Deleted: it takes no new connections and goes once its connections end. */
  removing: boolean;
}

/**
 * What the state file keeps of one frontend.
 *
 * @example
 * ```ts
 * import type { FrontendOverlayState } from "mini-balancer";
 *
 * const web: FrontendOverlayState | undefined = balancer.backends.snapshot().frontends["web"];
 * console.log(web?.backends.length ?? 0, "backends added at run time");
 * ```
 */
export interface FrontendOverlayState {
  /** The backends the API added, as their tables were received. */
  backends: Record<string, unknown>[];
  /** Patched weights and limits, by backend name. */
  patches: Record<string, { weight?: number; max_connections?: number | null }>;
  /** Backends drained or disabled, by name. */
  states: Record<string, AdminState>;
}

/**
 * What the state file keeps: the overlay of every frontend, by name.
 *
 * @example
 * ```ts
 * import type { OverlayState } from "mini-balancer";
 * import { readFile, writeFile } from "node:fs/promises";
 *
 * const state: OverlayState = balancer.backends.snapshot();
 * await writeFile("lb.state.json", JSON.stringify(state));
 * // at the next start:
 * const problems = balancer.backends.restore(JSON.parse(await readFile("lb.state.json", "utf8")));
 * ```
 */
export interface OverlayState {
  /** The format's version: 1. */
  version: 1;
  /** Each frontend's API backends, weights and admin states, by frontend name. */
  frontends: Record<string, FrontendOverlayState>;
}

/**
 * The outcome of an API change: done, or an HTTP status and a one-line reason.
 *
 * @example
 * ```ts
 * import type { BackendChangeOutcome, BackendState } from "mini-balancer";
 *
 * const outcome: BackendChangeOutcome<BackendState> = balancer.backends.add("web", {
 *   forward_to: "127.0.0.1:8082",
 * });
 * if (outcome.ok) console.log("added", outcome.value.config.name);
 * else console.error(outcome.status, outcome.error); // 400, 404 or 409
 * ```
 */
export type Outcome<T> = { ok: true; value: T } | { ok: false; status: number; error: string };

/** How often a deleted backend's open connections are looked at, in milliseconds. */
const REAP_EVERY_MS = 100;

const fail = (status: number, error: string): { ok: false; status: number; error: string } => ({
  ok: false,
  status,
  error,
});

/**
 * The API's backends of every frontend, merged into each config the balancer takes.
 *
 * @example
 * ```ts
 * import type { RuntimeBackends } from "mini-balancer";
 *
 * const backends: RuntimeBackends = balancer.backends;
 * const stop = backends.subscribe(() => console.log("backends changed"));
 * balancer.frontend("web").addBackend({ forward_to: "127.0.0.1:8082" }); // logs "backends changed"
 * stop();
 * ```
 */
export class RuntimeBackends {
  readonly #frontends: () => readonly OverlayFrontend[];
  /** Each frontend's config as the file gives it, by name. */
  readonly #files = new Map<string, FrontendConfig>();
  /** The backends the API added, by frontend and backend name. */
  readonly #added = new Map<string, Map<string, Added>>();
  /** Patched weights and limits, by frontend and backend name. */
  readonly #patches = new Map<string, Map<string, BackendPatch>>();
  #reaper: ReturnType<typeof setInterval> | undefined;
  /** Told of each change a program makes (the admin listener writes its state file). */
  readonly #listeners = new Set<() => void>();

  /**
   * Keeps the run-time changes of the frontends `frontends` returns.
   *
   * @param frontends the serving frontends now
   */
  constructor(frontends: () => readonly OverlayFrontend[]) {
    this.#frontends = frontends;
  }

  /**
   * A frontend config from the file with the API's backends and patches
   * merged in; remembers the file's config for later changes. A file
   * backend named as an API one replaces it (logged).
   *
   * @param file the frontend's config as the file gives it
   * @returns the config to serve
   */
  merge(file: FrontendConfig): FrontendConfig {
    this.#files.set(file.name, file);
    const added = this.#added.get(file.name);
    const names = new Set(file.backends.map((backend) => backend.name));
    const backends = [...file.backends];
    for (const [name, entry] of added ?? []) {
      if (names.has(name)) {
        added!.delete(name);
        getLog(OPERATOR_CATEGORY).info("api backend replaced by the config file", {
          frontend: file.name,
          backend: name,
        });
        continue;
      }
      backends.push(entry.config);
    }
    const patches = this.#patches.get(file.name);
    if (patches === undefined || patches.size === 0) {
      return added === undefined || added.size === 0 ? file : { ...file, backends };
    }
    for (const name of patches.keys()) {
      if (!backends.some((backend) => backend.name === name)) patches.delete(name);
    }
    return { ...file, backends: backends.map((backend) => patched(backend, patches)) };
  }

  /** Whether a backend was made through the API (`"api"`) or by the file (`"config"`). */
  source(frontend: string, backend: string): "api" | "config" {
    return this.#added.get(frontend)?.has(backend) === true ? "api" : "config";
  }

  /** Whether an API backend was deleted and waits for its connections to end. */
  removing(frontend: string, backend: string): boolean {
    return this.#added.get(frontend)?.get(backend)?.removing === true;
  }

  /**
   * Adds a backend to a frontend.
   *
   * @param frontend the frontend's name
   * @param table the backend's table (parsed JSON)
   * @returns the live backend, or 404 (no frontend), 400 (the file's message), 409 (name in use)
   */
  add(frontend: string, table: unknown): Outcome<BackendState> {
    const serving = this.#find(frontend);
    const file = this.#files.get(frontend);
    if (serving === undefined || file === undefined) return fail(404, "no such frontend");
    let config: BackendConfig;
    try {
      config = validateBackendTable(table, file);
    } catch (error) {
      return fail(400, (error as Error).message);
    }
    if (serving.pool.backends.some((backend) => backend.config.name === config.name)) {
      return fail(409, `backend.name ${JSON.stringify(config.name)} is in use in this frontend`);
    }
    const added = this.#added.get(frontend) ?? new Map<string, Added>();
    this.#added.set(frontend, added);
    added.set(config.name, { table: table as Record<string, unknown>, config, removing: false });
    this.#apply(serving);
    return { ok: true, value: this.#backend(serving, config.name)! };
  }

  /**
   * Changes a backend's weight or max_connections (any backend, the file's too).
   *
   * @param frontend the frontend's name
   * @param backend the backend's name
   * @param patch the new values, already checked
   * @returns the live backend and its values before, or 404
   */
  patch(
    frontend: string,
    backend: string,
    patch: BackendPatch,
  ): Outcome<{ backend: BackendState; before: BackendPatch }> {
    const serving = this.#find(frontend);
    const found = serving === undefined ? undefined : this.#backend(serving, backend);
    if (serving === undefined || found === undefined || this.removing(frontend, backend)) {
      return fail(404, "no such frontend or backend");
    }
    const before = {
      weight: found.config.weight,
      maxConnections: found.config.maxConnections ?? null,
    };
    const patches = this.#patches.get(frontend) ?? new Map<string, BackendPatch>();
    this.#patches.set(frontend, patches);
    patches.set(backend, { ...patches.get(backend), ...patch });
    this.#apply(serving);
    return { ok: true, value: { backend: this.#backend(serving, backend)!, before } };
  }

  /**
   * Deletes an API backend: no new connections from now on; it leaves the
   * list once its open connections have ended.
   *
   * @param frontend the frontend's name
   * @param backend the backend's name
   * @returns nothing, or 404, or 409 for a backend of the config file
   */
  remove(frontend: string, backend: string): Outcome<undefined> {
    const serving = this.#find(frontend);
    const found = serving === undefined ? undefined : this.#backend(serving, backend);
    const entry = this.#added.get(frontend)?.get(backend);
    if (serving === undefined || found === undefined || entry?.removing === true) {
      return fail(404, "no such frontend or backend");
    }
    if (entry === undefined) {
      return fail(409, "is a backend of the config file: remove it there and reload");
    }
    entry.removing = true;
    found.admin = "draining";
    this.#reap();
    return { ok: true, value: undefined };
  }

  /**
   * What the state file keeps: the API's backends, the patches, and the
   * drain and disable states of the serving backends.
   */
  snapshot(): OverlayState {
    const frontends: Record<string, FrontendOverlayState> = {};
    const of = (name: string) => frontends[name] ??= { backends: [], patches: {}, states: {} };
    for (const [name, added] of this.#added) {
      for (const entry of added.values()) if (!entry.removing) of(name).backends.push(entry.table);
    }
    for (const [name, patches] of this.#patches) {
      for (const [backend, patch] of patches) {
        of(name).patches[backend] = {
          ...(patch.weight === undefined ? {} : { weight: patch.weight }),
          ...(patch.maxConnections === undefined ? {} : { max_connections: patch.maxConnections }),
        };
      }
    }
    for (const serving of this.#frontends()) {
      for (const backend of serving.pool.backends) {
        if (backend.admin !== "enabled" && !this.removing(serving.name, backend.config.name)) {
          of(serving.name).states[backend.config.name] = backend.admin;
        }
      }
    }
    return { version: 1, frontends };
  }

  /**
   * Applies what a state file kept, at start: its backends, patches and
   * states; frontends the config no longer has are left out.
   *
   * @param state the state file's content, its shape checked
   * @returns the problems found, one line each (`frontends.web.backends[0]: backend.forward_to …`)
   */
  restore(state: OverlayState): string[] {
    const problems: string[] = [];
    for (const [frontend, kept] of Object.entries(state.frontends)) {
      const serving = this.#find(frontend);
      const file = this.#files.get(frontend);
      if (serving === undefined || file === undefined) continue;
      const added = this.#added.get(frontend) ?? new Map<string, Added>();
      this.#added.set(frontend, added);
      const names = new Set(file.backends.map((backend) => backend.name));
      kept.backends.forEach((table, i) => {
        try {
          const config = validateBackendTable(table, file);
          if (!names.has(config.name)) added.set(config.name, { table, config, removing: false });
        } catch (error) {
          problems.push(`frontends.${frontend}.backends[${i}]: ${(error as Error).message}`);
        }
      });
      const patches = new Map<string, BackendPatch>();
      for (const [name, patch] of Object.entries(kept.patches)) {
        patches.set(name, {
          ...(patch.weight === undefined ? {} : { weight: patch.weight }),
          ...(patch.max_connections === undefined ? {} : { maxConnections: patch.max_connections }),
        });
      }
      this.#patches.set(frontend, patches);
      this.#apply(serving);
      for (const [name, admin] of Object.entries(kept.states)) {
        const backend = this.#backend(serving, name);
        if (backend !== undefined) backend.admin = admin;
      }
    }
    return problems;
  }

  /**
   * Calls `listener` after each change a program makes through
   * `balancer.frontend(name)` (the admin API's own changes are saved by its routes).
   *
   * @param listener called after each change
   * @returns a function that stops the calls
   */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells the listeners that a program changed the backends. */
  changed(): void {
    for (const listener of this.#listeners) listener();
  }

  /** Stops looking after deleted backends (the balancer stops). */
  close(): void {
    clearInterval(this.#reaper);
    this.#reaper = undefined;
  }

  #find(frontend: string): OverlayFrontend | undefined {
    return this.#frontends().find((serving) => serving.name === frontend);
  }

  #backend(serving: OverlayFrontend, name: string): BackendState | undefined {
    return serving.pool.backends.find((backend) => backend.config.name === name);
  }

  /** Gives a frontend its file config with the overlay merged in. */
  #apply(serving: OverlayFrontend): void {
    const file = this.#files.get(serving.name);
    if (file !== undefined) serving.update(this.merge(file));
  }

  /** Takes deleted backends whose connections have ended out of their frontends. */
  #reap = (): void => {
    let waiting = false;
    for (const [frontend, added] of this.#added) {
      const serving = this.#find(frontend);
      let gone = false;
      for (const [name, entry] of added) {
        if (!entry.removing) continue;
        const backend = serving === undefined ? undefined : this.#backend(serving, name);
        if (backend === undefined || backend.active === 0) {
          added.delete(name);
          this.#patches.get(frontend)?.delete(name);
          gone = true;
        } else waiting = true;
      }
      if (gone && serving !== undefined) this.#apply(serving);
    }
    if (waiting && this.#reaper === undefined) {
      this.#reaper = setInterval(this.#reap, REAP_EVERY_MS);
    }
    if (!waiting) this.close();
  };
}

/** A backend with its patch applied. */
function patched(backend: BackendConfig, patches: Map<string, BackendPatch>): BackendConfig {
  const patch = patches.get(backend.name);
  if (patch === undefined) return backend;
  const { maxConnections, ...rest } = backend;
  const limit = patch.maxConnections === undefined ? maxConnections : patch.maxConnections;
  return {
    ...rest,
    weight: patch.weight ?? backend.weight,
    ...(limit === null || limit === undefined ? {} : { maxConnections: limit }),
  };
}
