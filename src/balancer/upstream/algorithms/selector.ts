/**
 * The selector seam: what an algorithm may base its choice on, and the one
 * method every algorithm implements.
 *
 * @module
 */
import type { Endpoint } from "../../../runtime/types.ts";
import type { BackendState } from "../backend.ts";

/** What a selector may base its choice on. */
export interface PickContext {
  /** The client's address. */
  readonly client: Endpoint;
}

/** A load-balancing algorithm: picks the backend for each new connection. */
export interface Selector {
  /**
   * Picks a backend for one connection.
   *
   * @param context the connection's facts
   * @returns the backend, or `undefined` when none can take it
   */
  pick(context: PickContext): BackendState | undefined;
}
