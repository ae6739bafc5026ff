/**
 * The shape of one config key's documentation (schema_docs.ts and the
 * tables it gathers).
 *
 * @module
 */

/** The documentation of one config key. */
export interface KeyDoc {
  /** How the reference shows the key, when not its path (`[frontend]`, `[[frontend.backend]]`). */
  readonly key?: string;
  /** The type as a config file writes it. */
  readonly type: string;
  /**
   * The default in words, for a key whose schema has no default value
   * (required, none, or one that depends on other keys); a key with a
   * default in the schema must not have one here.
   */
  readonly default?: string;
  /** A value as the file writes it. */
  readonly example: string;
  /** What the key does, in a sentence or two. */
  readonly meaning: string;
}
