/**
 * A frontend's backends changed from code: `balancer.frontend("web")`
 * adds, removes, reweighs, drains and enables backends through the same
 * function the admin API's backend routes call ({@linkcode changeBackend}),
 * with the same checks and messages, and the same audit line (who:
 * `library`). Changes survive reloads, as the API's do.
 *
 * @module
 */
import { type BackendChange, validateBackendChange } from "../config/backend_table.ts";
import { getLog, OPERATOR_CATEGORY } from "../log.ts";
import type { AdminState, BackendState } from "./upstream/backend.ts";
import type { RuntimeBackends } from "./upstream/runtime_backends.ts";

/** What {@linkcode changeBackend} needs of a balancer. */
export interface BackendHost {
  /** The API's backends, merged into every frontend config. */
  readonly backends: RuntimeBackends;
  /** Drains, disables or enables a backend; false when there is no such backend. */
  setBackendState(frontend: string, backend: string, state: AdminState): boolean;
  /** Every serving frontend and its backends, now. */
  status(): readonly { name: string; backends: readonly { name: string; active: number }[] }[];
}

/** A change of a frontend's backends, as the admin API or a program asks it. */
export type BackendChangeRequest =
  | { kind: "add"; table: unknown }
  | { kind: "patch"; backend: string; patch: BackendChange }
  | { kind: "remove"; backend: string }
  | { kind: "state"; backend: string; verb: "drain" | "disable" | "enable" };

/** What a change did: its outcome and the fields of its audit line. */
export interface BackendChangeDone {
  /** An HTTP status: 200/201/204 done, 400 bad table, 404 unknown, 409 conflict. */
  status: number;
  /** Why it was refused (one line), when it was. */
  error?: string;
  /** The changed backend, when it is still listed. */
  backend?: BackendState;
  /** The action (`add backend`, `patch backend`, `delete backend`, `drain`, …). */
  action: string;
  /** `frontend/backend`. */
  target: string;
  /** What came of it: the state, or the error. */
  result: string;
  /** The values before and after, for a patch or an add. */
  before?: string;
  after?: string;
}

const STATES: Record<"drain" | "disable" | "enable", AdminState> = {
  drain: "draining",
  disable: "disabled",
  enable: "enabled",
};

/**
 * Applies one change to a frontend's backends: the one code path of the
 * admin API's backend routes and of {@linkcode FrontendBackends}.
 *
 * @param host the balancer
 * @param frontend the frontend's name
 * @param change what to do
 * @returns what was done, or why not, with its audit fields
 */
export function changeBackend(
  host: BackendHost,
  frontend: string,
  change: BackendChangeRequest,
): BackendChangeDone {
  const refused = (status: number, action: string, error: string, target: string) => ({
    status,
    error,
    action,
    target,
    result: error,
  });
  if (change.kind === "add") {
    const table = change.table as { name?: unknown; forward_to?: unknown } | undefined;
    const target = `${frontend}/${String(table?.name ?? table?.forward_to ?? "?")}`;
    const added = host.backends.add(frontend, change.table);
    if (!added.ok) return refused(added.status, "add backend", added.error, target);
    const { name, address, weight } = added.value.config;
    return {
      status: 201,
      backend: added.value,
      action: "add backend",
      target: `${frontend}/${name}`,
      result: "added",
      after: `${address} weight=${weight}`,
    };
  }
  const target = `${frontend}/${change.backend}`;
  if (change.kind === "remove") {
    const removed = host.backends.remove(frontend, change.backend);
    if (!removed.ok) return refused(removed.status, "delete backend", removed.error, target);
    const left = host.status().find((f) => f.name === frontend)?.backends.find((b) =>
      b.name === change.backend
    );
    return {
      status: 204,
      action: "delete backend",
      target,
      result: left === undefined ? "removed" : `removing (${left.active} open)`,
    };
  }
  if (change.kind === "state") {
    const state = STATES[change.verb];
    if (!host.setBackendState(frontend, change.backend, state)) {
      return refused(404, change.verb, "no such frontend or backend", target);
    }
    return { status: 200, action: change.verb, target, result: state };
  }
  const patched = host.backends.patch(frontend, change.backend, change.patch);
  if (!patched.ok) return refused(patched.status, "patch backend", patched.error, target);
  const { before, backend } = patched.value;
  const limit = backend.config.maxConnections ?? null;
  return {
    status: 200,
    backend,
    action: "patch backend",
    target,
    result: "patched",
    before: `weight=${before.weight} max_connections=${before.maxConnections}`,
    after: `weight=${backend.config.weight} max_connections=${limit}`,
  };
}

/**
 * The fields of an audit line for what a change did.
 *
 * @param done what it did
 * @returns the action, target, result, and before and after when known
 */
export function auditFields(done: BackendChangeDone): {
  action: string;
  target: string;
  result: string;
  before?: string;
  after?: string;
} {
  const { action, target, result, before, after } = done;
  return {
    action,
    target,
    result,
    ...(before === undefined ? {} : { before }),
    ...(after === undefined ? {} : { after }),
  };
}

/**
 * `balancer.frontend(name)` for a name no serving frontend has.
 *
 * @example
 * ```ts
 * try {
 *   balancer.frontend("nope");
 * } catch (error) {
 *   if (error instanceof UnknownFrontendError) console.log(error.frontend); // "nope"
 * }
 * ```
 */
export class UnknownFrontendError extends Error {
  /** The name asked for. */
  readonly frontend: string;

  /**
   * Builds the error: `no such frontend: "nope"`.
   *
   * @param frontend the name asked for
   */
  constructor(frontend: string) {
    super(`no such frontend: ${JSON.stringify(frontend)}`);
    this.name = "UnknownFrontendError";
    this.frontend = frontend;
  }
}

/**
 * A backend change refused: the admin API's answer as an error (its
 * `status` is the API's HTTP status, its message the API's `error`).
 *
 * @example
 * ```ts
 * try {
 *   balancer.frontend("web").addBackend({ forward_to: "nope" });
 * } catch (error) {
 *   if (error instanceof BackendChangeError) console.log(error.status, error.message);
 *   // 400 backend.forward_to must be host:port: current value is "nope"
 * }
 * ```
 */
export class BackendChangeError extends Error {
  /** 400 (the table or value does not fit), 404 (no such backend), 409 (name in use, or a file backend). */
  readonly status: number;

  /**
   * Builds the error from the API's status and text.
   *
   * @param status the admin API's HTTP status for it
   * @param message the admin API's error text
   */
  constructor(status: number, message: string) {
    super(message);
    this.name = "BackendChangeError";
    this.status = status;
  }
}

/**
 * A backend as a program adds it: the keys of a `[[frontends.backend]]` table.
 *
 * @example
 * ```ts
 * import type { BackendObject } from "mini-balancer";
 *
 * const backend: BackendObject = { name: "c", forward_to: "127.0.0.1:8082", weight: 2 };
 * balancer.frontend("web").addBackend(backend);
 * ```
 */
export type BackendObject = Record<string, unknown>;

/**
 * One frontend's backends, changed from code. Each change is the admin
 * API's, through the same function, and is logged under the operator
 * category as `admin action` with `peer=library`.
 *
 * @example
 * ```ts
 * const web = balancer.frontend("web");
 * web.addBackend({ name: "c", forward_to: "127.0.0.1:8082" });
 * web.setWeight("c", 5);
 * web.drain("a");
 * web.removeBackend("c");
 * ```
 */
export class FrontendBackends {
  readonly #host: BackendHost;
  readonly #name: string;
  readonly #changed: () => void;

  /**
   * Binds the changes to one frontend; programs get one from `balancer.frontend(name)`.
   *
   * @param host the balancer
   * @param name the frontend's name
   * @param changed called after each change made (the state file is written)
   */
  constructor(host: BackendHost, name: string, changed: () => void) {
    this.#host = host;
    this.#name = name;
    this.#changed = changed;
  }

  /** The frontend's name. */
  get name(): string {
    return this.#name;
  }

  /**
   * Adds a backend, validated as a `[[frontends.backend]]` table of the file.
   *
   * @param table its keys: `forward_to`, and `name`, `weight`, … as in the file
   * @returns the backend's name (its `name`, else its address as written)
   * @throws {BackendChangeError} 400 with the file's message, 409 for a name in use, 404 when the frontend is gone
   */
  addBackend(table: BackendObject): string {
    return this.#apply({ kind: "add", table }).backend!.config.name;
  }

  /**
   * Removes a backend the program or the admin API added: it takes no new
   * connection from now on (drains) and leaves the list once its open
   * connections have ended.
   *
   * @param name the backend's name
   * @throws {BackendChangeError} 404 for no such backend, 409 for a backend of the config file
   */
  removeBackend(name: string): void {
    this.#apply({ kind: "remove", backend: name });
  }

  /**
   * Sets a backend's weight (any backend, the config file's too).
   *
   * @param name the backend's name
   * @param weight 1 to 256
   * @throws {BackendChangeError} 400 for a weight out of range, 404 for no such backend
   */
  setWeight(name: string, weight: number): void {
    let patch: BackendChange;
    try {
      patch = validateBackendChange({ weight });
    } catch (error) {
      const message = (error as Error).message;
      this.#audit({
        status: 400,
        action: "patch backend",
        target: `${this.#name}/${name}`,
        result: message,
      });
      throw new BackendChangeError(400, message);
    }
    this.#apply({ kind: "patch", backend: name, patch });
  }

  /**
   * Drains a backend: no new connections, its open ones finish.
   *
   * @param name the backend's name
   * @throws {BackendChangeError} 404 for no such backend
   */
  drain(name: string): void {
    this.#apply({ kind: "state", backend: name, verb: "drain" });
  }

  /**
   * Disables a backend: no new connections, and no health checks.
   *
   * @param name the backend's name
   * @throws {BackendChangeError} 404 for no such backend
   */
  disable(name: string): void {
    this.#apply({ kind: "state", backend: name, verb: "disable" });
  }

  /**
   * Enables a drained or disabled backend again.
   *
   * @param name the backend's name
   * @throws {BackendChangeError} 404 for no such backend
   */
  enable(name: string): void {
    this.#apply({ kind: "state", backend: name, verb: "enable" });
  }

  #apply(change: BackendChangeRequest): BackendChangeDone {
    const done = changeBackend(this.#host, this.#name, change);
    this.#audit(done);
    if (done.error !== undefined) throw new BackendChangeError(done.status, done.error);
    this.#changed();
    return done;
  }

  #audit(done: BackendChangeDone): void {
    getLog(OPERATOR_CATEGORY).info("admin action", { peer: "library", ...auditFields(done) });
  }
}
